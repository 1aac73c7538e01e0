package clihelp

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestWriteUsageGroupsFlags: the command's own flags come first, then
// the shared groups in the given order; zero defaults are not shown,
// strings are quoted, long usage wraps under its column.
func TestWriteUsageGroupsFlags(t *testing.T) {
	c := &cobra.Command{Use: "tool [flags]", Short: "do a thing", Run: func(*cobra.Command, []string) {}}
	fs := c.Flags()
	InGroup(fs, "Second", func() { fs.Duration("wait", 0, "how long to wait") })
	InGroup(fs, "First", func() { fs.String("url", "nats://x", "where") })
	fs.Bool("dry-run", false, strings.Repeat("word ", 30))
	var b strings.Builder
	WriteHelp(&b, c, []string{"First", "Second"})
	out := b.String()
	own, first, second := strings.Index(out, "\nFlags:"), strings.Index(out, "First flags:"), strings.Index(out, "Second flags:")
	if !strings.HasPrefix(out, "Do a thing.\n\nUsage:\n  tool [flags]\n") || own < 0 || !(own < first && first < second) {
		t.Fatalf("help:\n%s", out)
	}
	if !strings.Contains(out, `--url STRING   where (default "nats://x")`) {
		t.Errorf("string default not quoted:\n%s", out)
	}
	if strings.Contains(out, "(default 0s)") || strings.Contains(out, "(default false)") {
		t.Errorf("zero default shown:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 100 {
			t.Errorf("line of %d columns: %q", len(l), l)
		}
	}
}

// TestNormalizeArgsAndSuggestion: a one-dash long flag of the command
// run gets two dashes (nothing after --); an unknown flag two edits
// from a known one is suggested.
func TestNormalizeArgsAndSuggestion(t *testing.T) {
	root := &cobra.Command{Use: "r"}
	sub := &cobra.Command{Use: "plan", Run: func(*cobra.Command, []string) {}}
	sub.Flags().String("output", "", "")
	sub.Flags().Bool("dry-run", false, "")
	root.AddCommand(sub)
	got := NormalizeArgs(root, []string{"plan", "-output=json", "-x", "--", "-output"})
	if strings.Join(got, " ") != "plan --output=json -x -- -output" {
		t.Errorf("NormalizeArgs: %q", got)
	}
	if s := FlagSuggestion(sub, errors.New("unknown flag: --dryrun")); s != " (did you mean --dry-run?)" {
		t.Errorf("suggestion %q", s)
	}
	if s := FlagSuggestion(sub, errors.New("unknown flag: --zzzzzz")); s != "" {
		t.Errorf("suggestion for a far flag: %q", s)
	}
}
