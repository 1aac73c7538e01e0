// Package clihelp renders the help of a cobra command tree, GNU style:
// the description, the synopsis, the subcommands, the examples, then the
// flags by group (the command's own first, then shared groups in a given
// order, then the inherited ones), the usage column aligned and wrapped
// at 100 columns. WriteDocs renders every command's help as one Markdown
// reference (docs/cli.md).
//
// It imports only cobra and pflag; cmd/reconciler imports it.
package clihelp
