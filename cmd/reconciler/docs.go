package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// docsHeader opens docs/cli.md.
const docsHeader = `# Command reference

<!-- Generated from the command definitions in cmd/reconciler by
     'go generate ./cmd/reconciler' (reconciler docs docs/cli.md).
     Do not edit: TestCLIDocsUpToDate fails when this file and the code differ. -->

This is the output of ` + "`reconciler <command> --help`" + ` for every command. The
defaults shown are those with no environment variable set.

`

// newDocsCmd is the hidden command that writes docs/cli.md.
func newDocsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "docs [FILE]",
		Short:  "write the command reference (docs/cli.md) as Markdown, to FILE or stdout",
		Hidden: true,
		Args:   cobra.MaximumNArgs(1),
	}
	f := commandFlags(cmd, a.env)
	cmd.RunE = a.action(f, func(context.Context) error {
		var buf bytes.Buffer
		if err := writeCLIDocs(&buf); err != nil {
			return err
		}
		if len(f.pos) == 0 {
			_, err := a.stdout.Write(buf.Bytes())
			return err
		}
		return os.WriteFile(f.pos[0], buf.Bytes(), 0o644)
	})
	return cmd
}

// writeCLIDocs writes the reference of every command, in the tree's
// order, as one Markdown file. It builds a tree of its own with an empty
// environment, so the defaults do not depend on who runs it.
func writeCLIDocs(w io.Writer) error {
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, env: func(string) string { return "" }}
	root := newRootCmd(a)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var b strings.Builder
	b.WriteString(docsHeader)
	b.WriteString("Commands:\n\n")
	walk(root, func(c *cobra.Command) {
		if c == root || !documented(c) {
			return
		}
		fmt.Fprintf(&b, "- [%s](#%s): %s\n", c.CommandPath(), anchor(c.CommandPath()), c.Short)
	})
	b.WriteString("\n")
	walk(root, func(c *cobra.Command) {
		if !documented(c) {
			return
		}
		c.InitDefaultHelpFlag()
		writeCommandDoc(&b, c)
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

func writeCommandDoc(b *strings.Builder, c *cobra.Command) {
	fmt.Fprintf(b, "## %s\n\n%s.\n\n```text\n", c.CommandPath(), upperFirst(c.Short))
	writeHelp(b, c)
	b.WriteString("```\n\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
