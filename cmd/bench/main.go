package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

const usageText = `Usage: go run ./cmd/bench [flags]

The load benchmark of the reconciler. It starts a NATS server and the API
emulator in its own process, runs the real reconciler binary's "run" (and
"backfill") as child processes against them, runs the scenarios and prints
a table. The binary is --reconciler; by default the benchmark builds it
once with "go build ./cmd/reconciler" into a temporary directory (so run it
from inside the module).

Scenarios: 1 a backfill at the budget (with 3, live events during it, and
5, the CPU per script); 2 a large backfill; 4 a storm of events; 6 another
tool at a steady share of the user's budget while one and then two "run"
processes configured with the whole budget apply a backfill; 7 the other
tool's burst in the middle of a backfill, with live events during it; 8
--rate-limit auto against the API's policy alone. docs/performance.md has
the figures.

Exit codes: 0 the benchmark ran (a "NO" in the table is a missed target,
not a failure); 1 it could not run; 2 bad flags.

Flags:
`

// options are the benchmark's flags.
type options struct {
	reconciler string

	scripts    int
	bigScripts int
	budget     int
	bigBudget  int
	window     time.Duration
	live       int
	storm      int
	stormOver  int

	userQuota    int
	userWindow   time.Duration
	otherShare   float64
	userScripts  int
	burstShare   float64
	burstFor     time.Duration
	burstScripts int
	burstLive    int
	autoQuota    int
	autoWindow   time.Duration
	autoScripts  int

	only      string
	logLevel  string
	logFormat string
}

// scenarios are the names --only accepts.
var scenarios = []string{"1", "2", "3", "4", "5", "6", "7", "8"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// usageError is bad usage: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr} // the children's stderr is copied into it concurrently
	err := run(ctx, args, stdout, stderr)
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "bench: "+err.Error())
		return 2
	}
	fmt.Fprintln(stderr, "bench: "+err.Error())
	return 1
}

// parseFlags parses and checks the flags.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	var o options
	f := flag.NewFlagSet("bench", flag.ContinueOnError)
	f.SetOutput(stderr)
	f.Usage = func() {
		fmt.Fprint(stderr, usageText)
		f.VisitAll(func(fl *flag.Flag) {
			def := ""
			if fl.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", fl.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s\n        %s%s\n", fl.Name, fl.Usage, def)
		})
	}
	f.StringVar(&o.reconciler, "reconciler", "", "the reconciler binary the children run; empty: build it once with `go build ./cmd/reconciler` into a temporary directory")
	f.IntVar(&o.scripts, "scripts", 10000, "scenario 1: scripts in the backfill (30% need a change)")
	f.IntVar(&o.bigScripts, "big-scripts", 100000, "scenario 2: scripts in the large backfill")
	f.IntVar(&o.budget, "budget", 200, "scenario 1: API budget, requests per second (the emulator enforces it)")
	f.IntVar(&o.bigBudget, "big-budget", 1000, "scenario 2: API budget, requests per second")
	f.DurationVar(&o.window, "window", 5*time.Minute, "scenarios 1 and 2: the budget's window (the API's is 5m); the budget per window is requests per second × window")
	f.IntVar(&o.live, "live", 50, "scenario 3: live events published during scenario 1")
	f.IntVar(&o.storm, "storm", 100000, "scenario 4: events in the storm")
	f.IntVar(&o.stormOver, "storm-scripts", 1000, "scenario 4: scripts the storm is spread over")
	f.IntVar(&o.userQuota, "user-quota", 1000, "scenarios 6 and 7: the API's quota of the user per --user-window (every process gets it all as --rate-limit)")
	f.DurationVar(&o.userWindow, "user-window", 5*time.Second, "scenarios 6 and 7: the window of --user-quota, a strict sliding window; short, so that a scenario spans many windows")
	f.Float64Var(&o.otherShare, "other-tool-share", 0.25, "scenarios 6 and 7: the share of --user-quota another tool spends, steadily")
	f.IntVar(&o.userScripts, "user-scripts", 1500, "scenario 6: scripts the backfill adds a binding to (each run: one, then two `run` processes)")
	f.Float64Var(&o.burstShare, "burst-share", 0.30, "scenario 7: the share of --user-quota the other tool adds during its burst")
	f.DurationVar(&o.burstFor, "burst", 10*time.Second, "scenario 7: how long the burst lasts")
	f.IntVar(&o.burstScripts, "burst-scripts", 2000, "scenario 7: scripts the backfill adds a binding to (the burst starts when 30% are written)")
	f.IntVar(&o.burstLive, "burst-live", 20, "scenario 7: live events published during the burst, evenly")
	f.IntVar(&o.autoQuota, "auto-quota", 20, "scenario 8: the API's quota per --auto-window, the budget `--rate-limit auto` must find")
	f.DurationVar(&o.autoWindow, "auto-window", time.Second, "scenario 8: the window of --auto-quota, a strict sliding window")
	f.IntVar(&o.autoScripts, "auto-scripts", 200, "scenario 8: scripts the backfill adds a binding to")
	f.StringVar(&o.only, "only", "", "run only these scenarios, comma-separated (1,2,4,6,7,8; 3 and 5 come with 1)")
	f.StringVar(&o.logLevel, "log-level", "warn", "log level of the reconciler children: debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "console", "log format of the reconciler children: json or console")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	if f.NArg() > 0 {
		return nil, usagef("unexpected arguments: %s", strings.Join(f.Args(), " "))
	}
	return &o, o.validate()
}

func (o *options) validate() error {
	positive := []struct {
		name string
		v    int
	}{{"scripts", o.scripts}, {"big-scripts", o.bigScripts}, {"budget", o.budget}, {"big-budget", o.bigBudget},
		{"storm-scripts", o.stormOver}, {"user-quota", o.userQuota}, {"user-scripts", o.userScripts},
		{"burst-scripts", o.burstScripts}, {"auto-quota", o.autoQuota}, {"auto-scripts", o.autoScripts}}
	for _, p := range positive {
		if p.v <= 0 {
			return usagef("--%s: must be positive, got %d", p.name, p.v)
		}
	}
	switch {
	case o.live < 0:
		return usagef("--live: must be 0 or more, got %d", o.live)
	case o.burstLive < 0:
		return usagef("--burst-live: must be 0 or more, got %d", o.burstLive)
	case o.storm < o.stormOver:
		return usagef("--storm: must be at least --storm-scripts (%d), got %d", o.stormOver, o.storm)
	case o.window < time.Second:
		return usagef("--window: must be at least 1s, got %s", o.window)
	case o.userWindow < time.Second:
		return usagef("--user-window: must be at least 1s, got %s", o.userWindow)
	case o.autoWindow < time.Second:
		return usagef("--auto-window: must be at least 1s, got %s", o.autoWindow)
	case o.burstFor < o.userWindow:
		return usagef("--burst: must be at least --user-window (%s), got %s", o.userWindow, o.burstFor)
	case o.otherShare <= 0 || o.otherShare+o.burstShare >= 0.9:
		return usagef("--other-tool-share: must be positive and, with --burst-share (%v), leave more than the 10%% reserve: got %v", o.burstShare, o.otherShare)
	case o.burstShare <= 0:
		return usagef("--burst-share: must be positive, got %v", o.burstShare)
	}
	if o.only != "" {
		for _, s := range strings.Split(o.only, ",") {
			if !slices.Contains(scenarios, strings.TrimSpace(s)) {
				return usagef("--only: unknown scenario %q (want some of %s, comma-separated)", s, strings.Join(scenarios, ","))
			}
		}
	}
	switch o.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return usagef("--log-level: must be debug, info, warn or error, got %q", o.logLevel)
	}
	if o.logFormat != "json" && o.logFormat != "console" {
		return usagef("--log-format: must be json or console, got %q", o.logFormat)
	}
	return nil
}

// runs says whether --only asks for scenario n.
func (o *options) runs(n string) bool {
	if o.only == "" {
		return true
	}
	for _, s := range strings.Split(o.only, ",") {
		if strings.TrimSpace(s) == n {
			return true
		}
	}
	return false
}

// bench is one run of the benchmark.
type bench struct {
	o      *options
	w      *world
	stderr io.Writer
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	exe := o.reconciler
	if exe == "" {
		dir, err := os.MkdirTemp("", "reconciler-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if exe, err = buildReconciler(ctx, dir, stderr); err != nil {
			return err
		}
	} else if st, err := os.Stat(exe); err != nil || st.IsDir() {
		return usagef("--reconciler: %s is not a file (%v)", exe, err)
	}
	w, err := newWorld(ctx, exe, stderr)
	if err != nil {
		return err
	}
	defer w.close()
	w.logLevel, w.logFormat = o.logLevel, o.logFormat
	b := &bench{o: o, w: w, stderr: stderr}
	rows, err := b.scenarios(ctx)
	if err != nil {
		return err
	}
	printTable(stdout, rows)
	return nil
}

// scenarios runs the scenarios --only asks for and returns their rows.
func (b *bench) scenarios(ctx context.Context) ([]row, error) {
	o := b.o
	var rows []row
	add := func(r []row, err error) error {
		rows = append(rows, r...)
		return err
	}
	// The storm runs first, on a fresh NATS and emulator, so that the
	// 110,000 tenants of the backfills do not weigh on its measure.
	if o.runs("4") {
		if err := add(b.stormScenario(ctx, o.storm, o.stormOver)); err != nil {
			return nil, err
		}
	}
	if o.runs("1") || o.runs("3") || o.runs("5") {
		if err := add(b.backfillScenario(ctx, "customers", o.scripts, o.budget, o.window, o.live, false)); err != nil {
			return nil, err
		}
	}
	if o.runs("2") {
		if err := add(b.backfillScenario(ctx, "big", o.bigScripts, o.bigBudget, o.window, 0, true)); err != nil {
			return nil, err
		}
	}
	if o.runs("6") {
		for _, procs := range []int{1, 2} {
			if err := add(b.sharedWithOtherTool(ctx, procs)); err != nil {
				return nil, err
			}
		}
	}
	if o.runs("7") {
		if err := add(b.otherToolBurst(ctx)); err != nil {
			return nil, err
		}
	}
	if o.runs("8") {
		if err := add(b.autoAlone(ctx)); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// buildReconciler builds ./cmd/reconciler into dir and returns the
// binary's path.
func buildReconciler(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	exe := filepath.Join(dir, "reconciler")
	fmt.Fprintf(stderr, "bench: building the reconciler binary (go build ./cmd/reconciler) into %s\n", dir)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", exe, "github.com/reconciler/reconciler/cmd/reconciler")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the reconciler binary (run from inside the module, or pass --reconciler PATH): %w", err)
	}
	return exe, nil
}

// row is one line of the table.
type row struct{ scenario, measure, value, target, met string }

// newRow is a row whose met column says whether ok (empty without a
// target).
func newRow(s, m, v, t string, ok bool) row {
	met := "yes"
	if !ok {
		met = "NO"
	}
	if t == "" {
		met = ""
	}
	return row{s, m, v, t, met}
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintf(w, "\n%-4s %-70s %16s %14s %s\n", "#", "measure", "value", "target", "met")
	for _, r := range rows {
		fmt.Fprintf(w, "%-4s %-70s %16s %14s %s\n", r.scenario, r.measure, r.value, r.target, r.met)
	}
	fmt.Fprintf(w, "\nmachine: %d CPUs, %s %s/%s\n", runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
