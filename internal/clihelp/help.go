package clihelp

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Annotation is the flag annotation naming the group a flag is listed
// under in the help.
const Annotation = "reconciler_group"

// InGroup runs register and files every flag it added to fs under group.
func InGroup(fs *pflag.FlagSet, group string, register func()) {
	before := map[string]bool{}
	fs.VisitAll(func(fl *pflag.Flag) { before[fl.Name] = true })
	register()
	fs.VisitAll(func(fl *pflag.Flag) {
		if !before[fl.Name] {
			_ = fs.SetAnnotation(fl.Name, Annotation, []string{group})
		}
	})
}

// Install makes every command of the tree under root print its help and
// usage with WriteHelp and WriteUsage: GNU style, flags grouped, the
// shared groups in the order of groups.
func Install(root *cobra.Command, groups []string) {
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { WriteHelp(c.OutOrStdout(), c, groups) })
	root.SetUsageFunc(func(c *cobra.Command) error { WriteUsage(c.OutOrStderr(), c, groups); return nil })
}

// WriteHelp writes the description of c, then its usage.
func WriteHelp(w io.Writer, c *cobra.Command, groups []string) {
	long := c.Long
	if long == "" {
		long = UpperFirst(c.Short) + "."
	}
	fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(long))
	WriteUsage(w, c, groups)
}

// WriteUsage writes the synopsis, subcommands, examples and flags of c.
func WriteUsage(w io.Writer, c *cobra.Command, groups []string) {
	fmt.Fprintf(w, "Usage:\n  %s\n", c.UseLine())
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "  %s <command> [flags]\n\nCommands:\n", c.CommandPath())
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				fmt.Fprintf(w, "  %-12s %s\n", sub.Name(), sub.Short)
			}
		}
	}
	if c.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", c.Example)
	}
	for _, g := range flagGroups(c, groups) {
		fmt.Fprintf(w, "\n%s:\n%s", g.title, flagTable(g.flags))
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\nRun '%s <command> --help' for the flags of a command.\n", c.CommandPath())
	}
}

type flagGroup struct {
	title string
	flags []*pflag.Flag
}

// flagGroups returns c's flags by group: its own first, then the shared
// groups, then the inherited ones (help, version).
func flagGroups(c *cobra.Command, groups []string) []flagGroup {
	byGroup := map[string][]*pflag.Flag{}
	c.LocalFlags().VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden {
			return
		}
		g := ""
		if v := fl.Annotations[Annotation]; len(v) == 1 {
			g = v[0]
		}
		byGroup[g] = append(byGroup[g], fl)
	})
	var out []flagGroup
	add := func(title string, fls []*pflag.Flag) {
		if len(fls) > 0 {
			out = append(out, flagGroup{title, fls})
		}
	}
	add("Flags", byGroup[""])
	for _, g := range groups {
		add(g+" flags", byGroup[g])
	}
	var inherited []*pflag.Flag
	c.InheritedFlags().VisitAll(func(fl *pflag.Flag) {
		if !fl.Hidden {
			inherited = append(inherited, fl)
		}
	})
	add("Global flags", inherited)
	return out
}

// flagTable lays out flags as "  -h, --help   usage (default x)", the
// usage column aligned and wrapped at 100 columns.
func flagTable(fls []*pflag.Flag) string {
	type row struct{ left, right string }
	rows := make([]row, 0, len(fls))
	width := 0
	for _, fl := range fls {
		left := "      --" + fl.Name
		if fl.Shorthand != "" && fl.ShorthandDeprecated == "" {
			left = "  -" + fl.Shorthand + ", --" + fl.Name
		}
		varname, usage := pflag.UnquoteUsage(fl)
		if fl.Value.Type() != "bool" && varname != "" {
			left += " " + argName(varname)
		}
		if fl.Deprecated != "" {
			usage = "deprecated: " + fl.Deprecated
		} else if d := defaultText(fl); d != "" {
			usage += " (default " + d + ")"
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	}
	var b strings.Builder
	for _, r := range rows {
		pad := width + 3
		lines := wrap(r.right, 100-pad)
		fmt.Fprintf(&b, "%-*s%s\n", pad, r.left, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "%*s%s\n", pad, "", l)
		}
	}
	return b.String()
}

// argName is the placeholder of a flag's value: pflag's type name, in
// capitals (--ack-wait DURATION).
func argName(varname string) string {
	switch varname {
	case "stringArray":
		return "STRING"
	case "float64":
		return "NUMBER"
	}
	return strings.ToUpper(varname)
}

// defaultText is the default shown for fl, or "" for a zero one.
func defaultText(fl *pflag.Flag) string {
	switch d := fl.DefValue; {
	case d == "" || d == "[]":
		return ""
	case fl.Value.Type() == "bool" && d == "false":
		return ""
	case (fl.Value.Type() == "int" || fl.Value.Type() == "float64") && d == "0":
		return ""
	case fl.Value.Type() == "duration" && d == "0s":
		return ""
	case fl.Value.Type() == "string":
		return fmt.Sprintf("%q", d)
	default:
		return d
	}
}

// wrap splits s into lines of at most n columns (at least 30), at spaces.
func wrap(s string, n int) []string {
	n = max(n, 30)
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(s) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > n {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	return append(lines, cur.String())
}

// WriteDocs writes header, then the reference of every command of the
// tree under root, in the tree's order, as one Markdown file: a list of
// the commands, then a section per command with its help.
func WriteDocs(w io.Writer, root *cobra.Command, header string, groups []string) error {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("Commands:\n\n")
	Walk(root, func(c *cobra.Command) {
		if c == root || !documented(c) {
			return
		}
		fmt.Fprintf(&b, "- [%s](#%s): %s\n", c.CommandPath(), anchor(c.CommandPath()), c.Short)
	})
	b.WriteString("\n")
	Walk(root, func(c *cobra.Command) {
		if !documented(c) {
			return
		}
		c.InitDefaultHelpFlag()
		writeCommandDoc(&b, c, groups)
	})
	_, err := io.WriteString(w, b.String())
	return err
}

// documented reports whether c has a section: not hidden, not help.
func documented(c *cobra.Command) bool {
	for p := c; p != nil; p = p.Parent() {
		if p.Hidden {
			return false
		}
	}
	return c.Name() != "help"
}

// anchor is the heading slug of "## reconciler dlq list".
func anchor(path string) string { return strings.ReplaceAll(path, " ", "-") }

func writeCommandDoc(b *strings.Builder, c *cobra.Command, groups []string) {
	fmt.Fprintf(b, "## %s\n\n%s.\n\n```text\n", c.CommandPath(), UpperFirst(c.Short))
	WriteHelp(b, c, groups)
	b.WriteString("```\n\n")
}

// UpperFirst returns s with its first letter in capitals.
func UpperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Walk calls fn for c and every command under it, depth first.
func Walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		Walk(sub, fn)
	}
}
