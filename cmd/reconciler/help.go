package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// groupAnnotation is the flag annotation naming the group a flag is
// listed under in the help.
const groupAnnotation = "reconciler_group"

// Flag groups, in the order the help lists them after a command's own
// flags.
const (
	groupNATS = "NATS connection"
	groupAPI  = "Cloudflare API"
	groupLog  = "Logging"
)

// groupOrder returns the shared groups in the order of the help.
func groupOrder() []string { return []string{groupNATS, groupAPI, groupLog} }

// inGroup runs register and files every flag it added under group.
func (f *flagSet) inGroup(group string, register func()) {
	before := map[string]bool{}
	f.VisitAll(func(fl *pflag.Flag) { before[fl.Name] = true })
	register()
	f.VisitAll(func(fl *pflag.Flag) {
		if !before[fl.Name] {
			_ = f.SetAnnotation(fl.Name, groupAnnotation, []string{group})
		}
	})
}

// setHelp makes every command of the tree print its help and usage with
// writeHelp and writeUsage: GNU style, flags grouped.
func setHelp(root *cobra.Command) {
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { writeHelp(c.OutOrStdout(), c) })
	root.SetUsageFunc(func(c *cobra.Command) error { writeUsage(c.OutOrStderr(), c); return nil })
}

// writeHelp writes the description of c, then its usage.
func writeHelp(w io.Writer, c *cobra.Command) {
	long := c.Long
	if long == "" {
		long = upperFirst(c.Short) + "."
	}
	fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(long))
	writeUsage(w, c)
}

// writeUsage writes the synopsis, subcommands, examples and flags of c.
func writeUsage(w io.Writer, c *cobra.Command) {
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
	for _, g := range flagGroups(c) {
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
func flagGroups(c *cobra.Command) []flagGroup {
	byGroup := map[string][]*pflag.Flag{}
	c.LocalFlags().VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden {
			return
		}
		g := ""
		if v := fl.Annotations[groupAnnotation]; len(v) == 1 {
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
	for _, g := range groupOrder() {
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
