// Package clihelp is the command-line machinery of cmd/reconciler that is
// not the reconciler's own: flags and their help.
//
// Help: it renders the help of a cobra command tree, GNU style: the
// description, the synopsis, the subcommands, the examples, then the
// flags by group (the command's own first, then shared groups in a given
// order, then the inherited ones), the usage column aligned and wrapped
// at 100 columns. WriteDocs renders every command's help as one Markdown
// reference (docs/cli.md). NormalizeArgs accepts the one-dash spelling of
// long flags; FlagSuggestion says "did you mean".
//
// Flags: a Flags registers each flag with the environment variable that
// sets its default (a flag wins over its variable, the variable over the
// default); a variable's bad value is a UsageError naming the variable,
// and Label names a flag with its variable for messages. A UsageError is
// bad usage or configuration: the command exits 2. Alias keeps an old
// spelling working. OneArg, OpenInput and JSONOr are the input and output
// conventions every command shares.
//
// It imports only cobra, pflag and the standard library; cmd/reconciler
// and the packages that build its parts (internal/process,
// internal/sandbox) import it.
package clihelp
