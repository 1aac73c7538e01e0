package main

import (
	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/clihelp"
)

// Flag groups, in the order the help lists them after a command's own
// flags.
const (
	groupNATS = "NATS connection"
	groupAPI  = "Cloudflare API"
	groupLog  = "Logging"
)

// groupOrder returns the shared groups in the order of the help.
func groupOrder() []string { return []string{groupNATS, groupAPI, groupLog} }

// setHelp makes every command of the tree print its help and usage GNU
// style, flags grouped (internal/clihelp).
func setHelp(root *cobra.Command) { clihelp.Install(root, groupOrder()) }
