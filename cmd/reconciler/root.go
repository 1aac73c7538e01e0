package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/reconciler/reconciler/internal/clihelp"
)

// rootLong is the root command's description.
const rootLong = `reconciler keeps the bindings of Cloudflare Workers equal to what a platform wants.

It consumes binding-change events from NATS JetStream (run), reads each
script's live bindings from the Cloudflare API, and writes only the
difference, under one rate budget shared by every process using the token.

Every flag also reads the environment variable shown in its help; a flag
wins over its variable. Flags may also be spelled with one dash
(-ack-wait 30s), as earlier versions accepted.

Exit codes: 0 success; 1 finished with failures; 2 bad usage or
configuration (and, with --detailed-exitcode, a preview that would change
something); 130 interrupted (Ctrl-C).`

// newRootCmd builds the command tree. Each command lives in a file of its
// own and is built by a newXxxCmd function; the flag groups shared by
// several commands (natsFlags, apiFlags, logFlags in config.go) register
// each of their flags in one place.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "reconciler",
		Short: "keep the bindings of Cloudflare Workers equal to what a platform wants",
		Long:  rootLong,
		Example: `  reconciler sandbox                      # try everything in one process
  reconciler run --nats-url nats://nats:4222
  reconciler publish events.jsonl
  reconciler plan events.jsonl
  reconciler completion bash > /etc/bash_completion.d/reconciler`,
		Version:                    versionString(),
		SilenceErrors:              true, // exitCode prints them, once
		SilenceUsage:               true,
		SuggestionsMinimumDistance: 2,
		// Args stays unset: cobra then answers an unknown command with
		// "did you mean".
		RunE: func(cmd *cobra.Command, args []string) error {
			// No command: the help, on stderr, and exit 2.
			cmd.SetOut(a.stderr)
			_ = cmd.Help()
			return &clihelp.UsageError{}
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return clihelp.Usagef("%v%s\nRun '%s --help' for usage.", err, clihelp.FlagSuggestion(cmd, err), cmd.CommandPath())
	})
	root.AddCommand(
		newRunCmd(a),
		newPublishCmd(a),
		newPlanCmd(a),
		newDLQCmd(a),
		newBackfillCmd(a),
		newEmulatorCmd(a),
		newSandboxCmd(a),
		newDoctorCmd(a),
		newStatusCmd(a),
		newDriftCmd(a),
		newVersionCmd(a),
		newDocsCmd(a),
	)
	walk(root, func(c *cobra.Command) {
		c.Flags().VisitAll(plainUsage)
		c.Flags().SetOutput(a.stderr) // where pflag says a flag is deprecated
	})
	setHelp(root)
	return root
}

// walk calls fn on c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) { clihelp.Walk(c, fn) }

// plainUsage keeps backquotes in a flag's usage from being taken as the
// name of its argument (pflag's convention): they become quotes.
func plainUsage(fl *pflag.Flag) {
	fl.Usage = strings.ReplaceAll(fl.Usage, "`", "'")
}

// normalizeArgs rewrites the one-dash spelling of a long flag that Go's
// flag package accepted into the two dashes cobra parses
// (clihelp.NormalizeArgs).
func normalizeArgs(root *cobra.Command, args []string) []string {
	return clihelp.NormalizeArgs(root, args)
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "print version, commit and Go version",
		Example: "  reconciler version\n  reconciler --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a.ran = true
			fmt.Fprintln(a.stdout, versionString())
			return nil
		},
	}
}
