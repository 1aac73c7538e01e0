package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/clihelp"
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
	f := clihelp.CommandFlags(cmd, a.env)
	cmd.RunE = a.action(f, func(context.Context) error {
		var buf bytes.Buffer
		if err := writeCLIDocs(&buf); err != nil {
			return err
		}
		if len(f.Pos) == 0 {
			_, err := a.stdout.Write(buf.Bytes())
			return err
		}
		return os.WriteFile(f.Pos[0], buf.Bytes(), 0o644)
	})
	return cmd
}

// writeCLIDocs writes the reference of every command as one Markdown
// file. It builds a tree of its own with an empty environment, so the
// defaults do not depend on who runs it.
func writeCLIDocs(w io.Writer) error {
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, env: func(string) string { return "" }}
	return clihelp.WriteDocs(w, newRootCmd(a), docsHeader, groupOrder())
}
