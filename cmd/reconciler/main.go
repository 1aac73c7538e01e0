// Command reconciler keeps the bindings of Cloudflare Workers equal to what
// a platform wants. Its commands, flags, variables and exit codes are in
// docs/cli.md, generated from the command definitions (root.go, one file
// per command) by `go generate ./cmd/reconciler`.
package main

//go:generate go run . docs ../../docs/cli.md

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/reconciler/reconciler/internal/buildinfo"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/process"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// Exit codes of every command.
const (
	exitOK          = 0   // success
	exitFailed      = 1   // finished with failures
	exitUsage       = 2   // bad usage or configuration
	exitChanges     = 2   // plan, backfill --dry-run with --detailed-exitcode: something would change
	exitInterrupted = 130 // stopped by Ctrl-C (SIGINT), as shells report it
)

func main() {
	ctx, interrupted, stop := process.NotifySignals(context.Background())
	code := realMain(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, osEnv)
	stop()
	if interrupted() {
		code = exitInterrupted
	}
	os.Exit(code)
}

// app is what every command shares: the process's streams and
// environment, and whether parsing got as far as a command's body.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            clihelp.Env
	// ran is set when a command's body starts: an error before it is bad
	// usage (exit 2).
	ran bool
}

// realMain runs one command and returns the exit code.
func realMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, e clihelp.Env) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, env: e}
	root := newRootCmd(a)
	root.SetArgs(normalizeArgs(root, args))
	err := root.ExecuteContext(ctx)
	return a.exitCode(err)
}

// action is the RunE of a command whose flags are f: it records that
// parsing succeeded, keeps the positional arguments, reports a bad
// environment value, then runs body.
func (a *app) action(f *clihelp.Flags, body func(ctx context.Context) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.ran = true
		f.Pos = args
		if err := f.EnvErr(); err != nil {
			return err
		}
		return body(cmd.Context())
	}
}

// exitCode prints err and returns the exit code it means.
func (a *app) exitCode(err error) int {
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	var drift *driftFoundError
	if errors.As(err, &drift) { // drift.go: its own exit code
		fmt.Fprintln(a.stderr, "reconciler: "+err.Error())
		return exitDrift
	}
	if errors.Is(err, errChangesPending) {
		return exitChanges
	}
	var ue *clihelp.UsageError
	if errors.As(err, &ue) || !a.ran {
		msg := err.Error()
		if !a.ran && strings.HasPrefix(msg, "unknown command") {
			msg = strings.TrimRight(msg, "\n") + "\nRun 'reconciler --help' for the commands."
		}
		if msg != "" {
			fmt.Fprintln(a.stderr, "reconciler: "+strings.TrimRight(msg, "\n"))
		}
		return exitUsage
	}
	fmt.Fprintln(a.stderr, "reconciler: "+err.Error())
	return exitFailed
}

func versionString() string {
	return fmt.Sprintf("reconciler %s (commit %s, %s %s/%s)", buildVersion(), buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// buildVersion returns the version the binary was built as: the -ldflags
// value, else the module version the Go toolchain stamped (`go install
// ...@v1.2.3`, or a pseudo-version from the VCS tags), else "dev".
func buildVersion() string {
	info, _ := debug.ReadBuildInfo()
	return buildinfo.Version(version, info)
}

// buildCommit returns the commit the binary was built from: the -ldflags
// value, else what the Go toolchain stamped ("-dirty" when modified), else
// "unknown". The toolchain stamps nothing with -buildvcs=false, nor in a
// git worktree (whose .git is a file).
func buildCommit() string {
	info, _ := debug.ReadBuildInfo()
	return buildinfo.Commit(commit, info)
}
