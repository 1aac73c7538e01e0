package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/reconciler/reconciler/internal/testutil"
)

// TestCLIDocsUpToDate: docs/cli.md is what `reconciler docs` writes from
// the command definitions; run `go generate ./cmd/reconciler` after
// changing a command or a flag.
func TestCLIDocsUpToDate(t *testing.T) {
	var buf bytes.Buffer
	if err := writeCLIDocs(&buf); err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		hl, wl := strings.Split(string(have), "\n"), strings.Split(buf.String(), "\n")
		for i := 0; i < max(len(hl), len(wl)); i++ {
			var h, w string
			if i < len(hl) {
				h = hl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if h != w {
				t.Fatalf("docs/cli.md is out of step with the commands (run `go generate ./cmd/reconciler`); first difference at line %d:\n have %q\n want %q", i+1, h, w)
			}
		}
	}
	// The same generator through the hidden command, into a file.
	out := t.TempDir() + "/reference.txt"
	if code, _, stderr := call(t, nil, "", "docs", out); code != 0 {
		t.Fatalf("docs %s: exit %d %s", out, code, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, buf.Bytes()) {
		t.Fatal("`reconciler docs FILE` wrote something else than writeCLIDocs")
	}
}

// TestHelpIsGNUStyle: every command's --help exits 0 on stdout with a
// synopsis, examples and --flag spellings; no flag's usage keeps a
// backquote (pflag would print its text as the argument name).
func TestHelpIsGNUStyle(t *testing.T) {
	root := newRootCmd(&app{env: envMap(nil)})
	var paths [][]string
	walk(root, func(c *cobra.Command) {
		c.Flags().VisitAll(func(fl *pflag.Flag) {
			if strings.Contains(fl.Usage, "`") {
				t.Errorf("%s --%s: usage has a backquote: %q", c.CommandPath(), fl.Name, fl.Usage)
			}
		})
		if !c.Hidden && c.Runnable() && !strings.HasPrefix(c.CommandPath(), "reconciler completion") && c.Name() != "help" {
			paths = append(paths, strings.Fields(c.CommandPath())[1:])
		}
	})
	if len(paths) < 12 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, p := range paths {
		for _, h := range []string{"--help", "-h", "-help"} {
			code, out, stderr := call(t, nil, "", append(append([]string{}, p...), h)...)
			if code != 0 || !strings.Contains(out, "Usage:\n  reconciler") || stderr != "" {
				t.Errorf("%v %s: exit %d, stdout %.200q, stderr %q", p, h, code, out, stderr)
			}
			if len(p) > 0 && p[0] != "version" && !strings.Contains(out, "Examples:\n") {
				t.Errorf("%v %s: no examples", p, h)
			}
			if regexp.MustCompile(`(?m)^\s+-[a-z][a-z-]+ `).MatchString(out) {
				t.Errorf("%v %s: a flag spelled with one dash:\n%s", p, h, out)
			}
		}
	}
	code, out, _ := call(t, nil, "", "run", "--help")
	oneLine := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"--ack-wait DURATION", "(env RECONCILER_ACK_WAIT) (default 20s)", "NATS connection flags:", "Cloudflare API flags:", "Logging flags:"} {
		if code != 0 || !strings.Contains(oneLine, want) {
			t.Errorf("run --help lacks %q:\n%s", want, out)
		}
	}
	// No command: the help on stderr, exit 2.
	if code, out, stderr := call(t, nil, ""); code != 2 || out != "" || !strings.Contains(stderr, "Commands:") {
		t.Errorf("no command: exit %d, stdout %q, stderr %.100q", code, out, stderr)
	}
}

// TestHelpHidesSecretDefaults: a NATS password or token from the
// environment is not shown as a flag's default.
func TestHelpHidesSecretDefaults(t *testing.T) {
	code, out, _ := call(t, map[string]string{"NATS_PASSWORD": "pw-s3cret", "NATS_TOKEN": "tok-s3cret", "NATS_USER": "alice"}, "", "publish", "--help")
	if code != 0 || strings.Contains(out, "s3cret") {
		t.Fatalf("publish --help shows a secret (exit %d):\n%s", code, out)
	}
	if !strings.Contains(out, `(default "alice")`) {
		t.Errorf("the help does not show a variable's default any more:\n%s", out)
	}
}

// TestDidYouMean: a typo of a command or a flag is a usage error (exit 2)
// with a suggestion and a pointer to --help, not the whole usage.
func TestDidYouMean(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"rnu"}, []string{`unknown command "rnu"`, "Did you mean this?", "run", "reconciler --help"}},
		{[]string{"publsh", "x"}, []string{"publish"}},
		{[]string{"run", "--ack-wiat", "3s"}, []string{"unknown flag: --ack-wiat", "did you mean --ack-wait?", "reconciler run --help"}},
		{[]string{"dlq", "lsit"}, []string{`unknown subcommand "lsit"`, "did you mean list?"}},
		{[]string{"backfill", "--dispatch-namspace", "x"}, []string{"did you mean --dispatch-namespace?"}},
	}
	for _, c := range cases {
		code, out, stderr := call(t, nil, "", c.args...)
		if code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q", c.args, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: stderr lacks %q:\n%s", c.args, w, stderr)
			}
		}
		if n := strings.Count(stderr, "\n"); n > 6 {
			t.Errorf("%v: %d lines on stderr, want a short message:\n%s", c.args, n, stderr)
		}
	}
}

// TestSingleDashFlagsStillWork: the one-dash spelling Go's flag package
// accepted is rewritten to two dashes, for every kind of flag, but not
// after "--" and not for a name that is no flag of the command.
func TestSingleDashFlagsStillWork(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "-ack-wait", "0s"}, "--ack-wait (or RECONCILER_ACK_WAIT): must be at least 1s, got 0s"},
		{[]string{"run", "-rate-limit=fast"}, `--rate-limit (or RECONCILER_RATE_LIMIT): rate "fast"`},
		{[]string{"dlq", "list", "-script", "nodots"}, `--script: want ACCOUNT.NAMESPACE.SCRIPT, got "nodots"`},
		{[]string{"emulator", "-fail-rate=2"}, "--fail-rate: must be between 0 and 1, got 2"},
		{[]string{"publish", "-no-validate", "-concurrency", "4", "x"}, "unknown shorthand flag: 'c' in -concurrency"},
	}
	for _, c := range cases {
		code, _, stderr := call(t, nil, "", c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	root := newRootCmd(&app{env: envMap(nil)})
	for _, c := range []struct{ in, out []string }{
		{[]string{"run", "-ack-wait", "30s", "-h"}, []string{"run", "--ack-wait", "30s", "-h"}},
		{[]string{"plan", "-output=json", "--", "-stored"}, []string{"plan", "--output=json", "--", "-stored"}},
		{[]string{"dlq", "replay", "-keep", "-seq", "3"}, []string{"dlq", "replay", "--keep", "--seq", "3"}},
		{[]string{"publish", "-", "-nats-url", "nats://x"}, []string{"publish", "-", "--nats-url", "nats://x"}},
		{[]string{"run", "-help"}, []string{"run", "--help"}},
		{[]string{"-version"}, []string{"--version"}},
		{[]string{"publish", "-keep"}, []string{"publish", "-keep"}}, // no such flag of publish
	} {
		if got := normalizeArgs(root, c.in); strings.Join(got, " ") != strings.Join(c.out, " ") {
			t.Errorf("normalizeArgs(%q) = %q, want %q", c.in, got, c.out)
		}
	}
}

// TestOneSpellingPerConcept: --dispatch-namespace and --tenants are the
// names; --namespace and --seed-tenants still work, say they are
// deprecated, and show in the help as such.
func TestOneSpellingPerConcept(t *testing.T) {
	for _, args := range [][]string{{"backfill", "--namespace", "customers"}, {"backfill", "--dispatch-namespace", "customers"}} {
		code, _, stderr := call(t, nil, "", args...)
		if code != 2 || !strings.Contains(stderr, "--dispatch-namespace needs --patch FILE") {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
		if deprecated := strings.Contains(stderr, "--namespace has been deprecated, use --dispatch-namespace"); deprecated != (args[1] == "--namespace") {
			t.Errorf("%v: deprecation notice %v: %q", args, deprecated, stderr)
		}
	}
	_, out, _ := call(t, nil, "", "backfill", "--help")
	if !regexp.MustCompile(`--namespace STRING +deprecated: use --dispatch-namespace`).MatchString(out) {
		t.Errorf("backfill --help does not show --namespace as deprecated:\n%s", out)
	}
	for _, spelling := range []string{"--tenants", "--seed-tenants", "-seed-tenants"} {
		ctx, cancel := context.WithCancel(context.Background())
		stdout, stderr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
		done := make(chan int, 1)
		go func() {
			done <- realMain(ctx, []string{"emulator", "--addr", "127.0.0.1:0", spelling, "3"}, nil, stdout, stderr, envMap(nil))
		}()
		testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(stdout.String(), "use: CLOUDFLARE_API_BASE_URL") }, "emulator %s did not start: %s", spelling, stderr)
		cancel()
		if code := <-done; code != 0 || !strings.Contains(stdout.String(), "seeded 3 tenants") {
			t.Errorf("emulator %s 3: exit %d\n%s%s", spelling, code, stdout, stderr)
		}
		if deprecated := strings.Contains(stderr.String(), "--seed-tenants has been deprecated, use --tenants"); deprecated != (spelling != "--tenants") {
			t.Errorf("emulator %s: deprecation notice %v: %q", spelling, deprecated, stderr)
		}
	}
	_, out, _ = call(t, nil, "", "sandbox", "--help")
	if !strings.Contains(out, "--tenants INT") {
		t.Errorf("sandbox --help lacks --tenants:\n%s", out)
	}
}

// TestCompletion: `reconciler completion bash|zsh|fish` prints a script
// for the shell, and the shell's completion request lists the commands
// and a command's flags.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef reconciler", "fish": "complete -c reconciler"} {
		code, out, stderr := call(t, nil, "", "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, %q missing (stderr %q)", shell, code, want, stderr)
		}
	}
	_, out, _ := call(t, nil, "", "__complete", "ba")
	if !strings.Contains(out, "backfill") {
		t.Errorf("completing 'ba' does not offer backfill: %q", out)
	}
	_, out, _ = call(t, nil, "", "__complete", "backfill", "--dispatch")
	if !strings.Contains(out, "--dispatch-namespace") {
		t.Errorf("completing backfill --dispatch does not offer --dispatch-namespace: %q", out)
	}
}

// TestCtrlCExits130 runs the real binary: Ctrl-C (SIGINT) ends a command
// with exit code 130 after its own clean-up; SIGTERM stays a graceful
// exit 0 for the long-running commands.
func TestCtrlCExits130(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGINT, exitInterrupted}, {syscall.SIGTERM, 0}} {
		cmd := exec.Command(exe, "emulator", "--addr", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), "RECONCILER_TEST_MAIN=1")
		out := &testutil.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "serving at") }, "emulator did not start: %s", out)
		_ = cmd.Process.Signal(c.sig)
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.want {
			t.Errorf("emulator after %v: exit %d, want %d\n%s", c.sig, code, c.want, out)
		}
	}
}
