// Command reconciler keeps the bindings of Cloudflare Workers equal to what
// a platform wants. See README.md and docs/configuration.md for the subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

const usageText = `reconciler keeps the bindings of Cloudflare Workers equal to what a platform wants.

Usage:
  reconciler <command> [flags]

Commands:
  run                 consume events and reconcile until SIGINT/SIGTERM, then shut down gracefully
  publish FILE|-      publish events (JSON lines) to the stream, Nats-Msg-Id = event id
  plan [FILE|-]       read live state and print what would change for events, writing nothing
  dlq list            list dead letters
  dlq replay          republish dead letters after a fix
  backfill            bulk reconcile many scripts through the pipeline, behind live events, resumably
  emulator            serve the Cloudflare API emulator on --addr until stopped
  sandbox             everything in one process: embedded NATS, emulator with tenants, a demo backfill
  bench               the load benchmark (backfills, live latency, storm) against the emulator
  doctor              check the API's undocumented behaviours on your account (read-only unless --write-probe)
  version             print version, commit and Go version

Run "reconciler <command> -h" for the flags of a command. Every flag also reads
the environment variable shown in its help; flags win.

Exit codes: 0 success; 1 finished with failures; 2 bad usage or configuration.
`

func main() {
	os.Exit(realMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, osEnv))
}

// realMain runs one command and returns the exit code.
func realMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, e env) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stdout, stderr, e)
	case "publish":
		err = cmdPublish(ctx, rest, stdin, stdout, stderr, e)
	case "plan":
		err = cmdPlan(ctx, rest, stdin, stdout, stderr, e)
	case "dlq":
		err = cmdDLQ(ctx, rest, stdout, stderr, e)
	case "emulator":
		err = cmdEmulator(ctx, rest, stdout, stderr, e)
	case "version", "--version":
		fmt.Fprintln(stdout, versionString())
	case "backfill":
		err = cmdBackfill(ctx, rest, stdin, stdout, stderr, e)
	case "sandbox":
		err = cmdSandbox(ctx, rest, stdout, stderr, e)
	case "bench":
		err = cmdBench(ctx, rest, stdout, stderr, e)
	case "doctor":
		err = cmdDoctor(ctx, rest, stdout, stderr, e) // doctor.go
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
	default:
		fmt.Fprint(stderr, usageText)
		err = usagef("unknown command %q", cmd)
	}
	return exitCode(err, stderr)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "reconciler: "+ue.msg)
		return 2
	}
	fmt.Fprintln(stderr, "reconciler: "+err.Error())
	return 1
}

func versionString() string {
	return fmt.Sprintf("reconciler %s (commit %s, %s %s/%s)", buildVersion(), buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildVersion returns the version the binary was built as: the -ldflags
// value, else the module version the Go toolchain stamped (`go install
// ...@v1.2.3`, or a pseudo-version from the VCS tags), else "dev".
func buildVersion() string {
	info, _ := debug.ReadBuildInfo()
	return versionOf(version, info)
}

// buildCommit returns the commit the binary was built from: the -ldflags
// value, else what the Go toolchain stamped ("-dirty" when modified), else
// "unknown". The toolchain stamps nothing with -buildvcs=false, nor in a
// git worktree (whose .git is a file).
func buildCommit() string {
	info, _ := debug.ReadBuildInfo()
	return commitOf(commit, info)
}

func versionOf(ldflags string, info *debug.BuildInfo) string {
	if ldflags != "dev" && ldflags != "" {
		return ldflags
	}
	if info != nil && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

func commitOf(ldflags string, info *debug.BuildInfo) string {
	c, modified := ldflags, false
	if info != nil {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.modified":
				modified = ldflags == "" && s.Value == "true"
			}
		}
	}
	if c == "" {
		c = "unknown"
	} else if modified {
		c += "-dirty"
	}
	return c
}

// oneArg returns the single positional argument, or "-" when optional and
// absent.
func oneArg(f *flagSet, what string, optional bool) (string, error) {
	switch len(f.pos) {
	case 0:
		if optional {
			return "-", nil
		}
		return "", usagef("missing %s (a file name, or - for stdin)", what)
	case 1:
		return f.pos[0], nil
	}
	return "", usagef("want one %s, got %d arguments: %s", what, len(f.pos), strings.Join(f.pos, " "))
}

// openInput opens a file or stdin ("-").
func openInput(name string, stdin io.Reader) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(stdin), nil
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return fh, nil
}
