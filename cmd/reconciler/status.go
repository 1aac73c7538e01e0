package main

import (
	"context"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/process"
)

// scopeFlags name the scripts of an operator command: an account and a
// dispatch namespace ("" for ordinary Workers).
type scopeFlags struct {
	account   string
	namespace string
	output    string
}

func (s *scopeFlags) register(f *clihelp.Flags) {
	f.Str(&s.account, "account", "CLOUDFLARE_ACCOUNT_ID", "", "account of the scripts")
	f.Str(&s.namespace, "dispatch-namespace", "", "", "dispatch namespace of the scripts (empty = ordinary Workers)")
	f.Alias("namespace", "dispatch-namespace")
	f.Str(&s.output, "output", "", "text", "output: text or json (one JSON object)")
}

func (s *scopeFlags) validate(f *clihelp.Flags) error {
	if s.output != "text" && s.output != "json" {
		return clihelp.Usagef("--output: must be text or json, got %q", s.output)
	}
	if s.account == "" {
		return clihelp.Usagef("%s: needed (the account of the scripts)", f.Label("account"))
	}
	if err := cfapi.ValidateAccountID(s.account); err != nil {
		return clihelp.Usagef("%s: %v", f.Label("account"), err)
	}
	if s.namespace != "" {
		if err := cfapi.ValidateScriptName(s.namespace); err != nil {
			return clihelp.Usagef("--dispatch-namespace: %v", err)
		}
	}
	return nil
}

// ref names script in the scope. A full key ACCOUNT.NAMESPACE.SCRIPT (as
// `dlq list` shows it; namespace _ for ordinary Workers) names it alone.
func (s *scopeFlags) ref(script string) (cfapi.ScriptRef, error) {
	if strings.Count(script, ".") == 2 {
		return event.ParseScriptKey(script)
	}
	ref := cfapi.ScriptRef{AccountID: s.account, Namespace: s.namespace, Script: script}
	return ref, ref.Validate()
}

// openOps connects to the pipeline behind n (--nats-url, or a running
// `reconciler run`), which must be reachable, and opens what an operator
// command reads through (process.OpenOps), with an API client on its
// shared budget when withAPI.
func openOps(ctx context.Context, tool string, stderr io.Writer, n *natsFlags, a *apiFlags, e clihelp.Env, withAPI bool, log *zap.Logger) (*process.Ops, error) {
	conn, err := connectNATS(n, false, log)
	if err != nil {
		return nil, err
	}
	c := process.OpsConfig{Tool: tool, Stderr: stderr, Names: n.names(), Log: log,
		Key: func(ctx context.Context, conn *natsconn.Conn) ([]byte, error) {
			return fingerprintKey(ctx, conn.JS, e, 1, false)
		},
		Creds: func() (cfapi.Credentials, error) { return credentials(e, a.baseURL) }}
	if withAPI {
		api := a.spec()
		c.API = &api
	}
	return process.OpenOps(ctx, conn, c)
}

// statusFlags are the flags of `reconciler status`.
type statusFlags struct {
	nats    natsFlags
	api     apiFlags
	log     logFlags
	scope   scopeFlags
	noLive  bool
	history int
}

func (sf *statusFlags) register(f *clihelp.Flags) {
	sf.nats.register(f)
	sf.api.register(f)
	sf.log.register(f)
	sf.scope.register(f)
	f.BoolVar(&sf.noLive, "no-live", false, "do not read the live bindings (no API request; no plan)")
	f.IntVar(&sf.history, "history", 20, "at most this many writes of the history, newest last")
}

func newStatusCmd(a *app) *cobra.Command {
	var sf statusFlags
	cmd := &cobra.Command{
		Use:   "status SCRIPT [flags]",
		Short: "show everything the reconciler knows about one script, and why it is (not) written",
		Long: `Shows one script like kubectl describe: its desired state (secrets masked),
the last-applied record, the live bindings (one read from the shared budget,
unless --no-live), the three-way plan, the events not settled yet, why it is
held (another process's lease, a gradual deployment, a queued backfill item,
quarantined operations), its dead letters and the history of its writes.
It writes nothing. SCRIPT is a script name of --dispatch-namespace in
--account, or a full key ACCOUNT.NAMESPACE.SCRIPT (namespace _ for ordinary
Workers).`,
		Example: `  reconciler status tenant-0042 --dispatch-namespace customers
  reconciler status 0123456789abcdef0123456789abcdef.customers.tenant-0042 --output json
  reconciler status tenant-0042 --dispatch-namespace customers --no-live`,
	}
	f := clihelp.CommandFlags(cmd, a.env)
	sf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runStatus(ctx, a, f, &sf) })
	return cmd
}

func runStatus(ctx context.Context, a *app, f *clihelp.Flags, sf *statusFlags) error {
	if len(f.Pos) != 1 {
		return clihelp.Usagef("status needs one SCRIPT (a script name of --dispatch-namespace, or ACCOUNT.NAMESPACE.SCRIPT), got %d arguments", len(f.Pos))
	}
	script := f.Pos[0]
	if strings.Count(script, ".") == 2 && sf.scope.account == "" {
		sf.scope.account = strings.SplitN(script, ".", 2)[0] // the key names it
	}
	if err := clihelp.ValidateAll(f, sf.nats.validate, sf.api.validate, sf.log.validate, sf.scope.validate); err != nil {
		return err
	}
	if sf.history < 1 {
		return clihelp.Usagef("--history: must be at least 1, got %d", sf.history)
	}
	ref, err := sf.scope.ref(script)
	if err != nil {
		return clihelp.Usagef("SCRIPT: %v", err)
	}
	log := sf.log.logger(a.stderr)
	defer func() { _ = log.Sync() }()
	s, err := openOps(ctx, "status", a.stderr, &sf.nats, &sf.api, a.env, !sf.noLive, log)
	if err != nil {
		return err
	}
	defer s.Close()
	var api tools.StatusAPI
	if s.Client != nil {
		api = s.Client
	}
	st, err := tools.ScriptStatusOf(ctx, s.Res, api, s.Planner, ref, tools.StatusOptions{NoLive: sf.noLive, History: sf.history})
	if err != nil {
		return err
	}
	return clihelp.JSONOr(a.stdout, sf.scope.output, st, func(w io.Writer) error { return tools.WriteStatus(w, st) })
}
