package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
configuration; 130 interrupted (Ctrl-C).`

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
			return &usageError{}
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%v%s\nRun '%s --help' for usage.", err, flagSuggestion(cmd, err), cmd.CommandPath())
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
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// plainUsage keeps backquotes in a flag's usage from being taken as the
// name of its argument (pflag's convention): they become quotes.
func plainUsage(fl *pflag.Flag) {
	fl.Usage = strings.ReplaceAll(fl.Usage, "`", "'")
}

// normalizeArgs rewrites the one-dash spelling of a long flag that Go's
// flag package accepted (-ack-wait 30s, -rate-limit=100/1s) into the two
// dashes cobra parses. Only names of flags of the command being run (its
// subcommand path is followed) are rewritten, and nothing after "--".
func normalizeArgs(root *cobra.Command, args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	cur := root
	for i, arg := range out {
		if arg == "--" {
			break
		}
		if !strings.HasPrefix(arg, "-") {
			for _, sub := range cur.Commands() {
				if sub.Name() == arg || sub.HasAlias(arg) {
					cur = sub
					break
				}
			}
			continue
		}
		if strings.HasPrefix(arg, "--") || len(arg) < 3 {
			continue
		}
		name, _, _ := strings.Cut(arg[1:], "=")
		if name == "help" || name == "version" && cur == root || cur.Flags().Lookup(name) != nil || cur.InheritedFlags().Lookup(name) != nil {
			out[i] = "-" + arg
		}
	}
	return out
}

// flagSuggestion returns " (did you mean --x?)" for an unknown flag close
// to one of cmd's, else "".
func flagSuggestion(cmd *cobra.Command, err error) string {
	msg := err.Error()
	const prefix = "unknown flag: --"
	if !strings.HasPrefix(msg, prefix) {
		return ""
	}
	given := strings.TrimPrefix(msg, prefix)
	best, bestD := "", 3 // at most two edits away
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden || fl.Deprecated != "" {
			return
		}
		d := editDistance(given, fl.Name)
		if strings.HasPrefix(fl.Name, given) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = fl.Name, d
		}
	})
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean --%s?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
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
