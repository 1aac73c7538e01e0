package clihelp

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// NormalizeArgs rewrites the one-dash spelling of a long flag that Go's
// flag package accepted (-ack-wait 30s, -rate-limit=100/1s) into the two
// dashes cobra parses. Only names of flags of the command being run (its
// subcommand path is followed) are rewritten, and nothing after "--".
func NormalizeArgs(root *cobra.Command, args []string) []string {
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

// FlagSuggestion returns " (did you mean --x?)" for an unknown flag close
// to one of cmd's, else "".
func FlagSuggestion(cmd *cobra.Command, err error) string {
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
