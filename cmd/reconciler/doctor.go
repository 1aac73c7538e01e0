package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/doctor"
)

// doctorFlags are the flags of `reconciler doctor`.
type doctorFlags struct {
	api        apiFlags
	account    string
	namespace  string
	writeProbe bool
	kvID       string
	output     string
}

func (df *doctorFlags) register(f *clihelp.Flags) {
	df.api.registerEndpoint(f) // a budget of its own: no shared-budget flags
	f.Str(&df.account, "account", "CLOUDFLARE_ACCOUNT_ID", "", "account to check")
	f.Str(&df.namespace, "dispatch-namespace", "", "", "dispatch namespace to check (its script list; the write probe's script goes there); empty = ordinary Workers only")
	f.BoolVar(&df.writeProbe, "write-probe", false, "also create a temporary script "+doctor.ProbePrefix+"<random>, change it and delete it (always, even on Ctrl-C), to check the writes")
	f.Str(&df.kvID, "kv-namespace", "", "", "with --write-probe: an existing KV namespace id the temporary script binds, so the settings check covers a KV binding")
	f.Str(&df.output, "output", "", "text", "output: text (one line per check) or json (one object)")
}

func (df *doctorFlags) validate(f *clihelp.Flags) error {
	if err := df.api.validateEndpoint(f); err != nil {
		return err
	}
	if df.account == "" {
		return clihelp.Usagef("%s: needed (the account to check)", f.Label("account"))
	}
	if err := cfapi.ValidateAccountID(df.account); err != nil {
		return clihelp.Usagef("%s: %v", f.Label("account"), err)
	}
	if df.namespace != "" {
		if err := cfapi.ValidateScriptName(df.namespace); err != nil {
			return clihelp.Usagef("--dispatch-namespace: %v", err)
		}
	}
	if df.kvID != "" && !df.writeProbe {
		return clihelp.Usagef("--kv-namespace needs --write-probe (only the temporary script binds it)")
	}
	if df.output != "text" && df.output != "json" {
		return clihelp.Usagef("--output: must be text or json, got %q", df.output)
	}
	return nil
}

func newDoctorCmd(a *app) *cobra.Command {
	var df doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor --account ID [--dispatch-namespace NS] [--write-probe] [flags]",
		Short: "check the API's undocumented behaviours on your account (read-only unless --write-probe)",
		Long: `Checks, once, what the reconciler assumes about the Cloudflare API where its
reference is silent, and says for each check ok, FAIL or skip, what it saw and
what to do. Read-only unless --write-probe. It spends a budget of its own
(--rate-limit): a few dozen requests.

Exit codes: 0 every check holds; 1 a check failed; 2 bad usage; 130
interrupted (Ctrl-C) before every check ran.`,
		Example: `  CLOUDFLARE_API_TOKEN=... reconciler doctor --account 0123456789abcdef0123456789abcdef
  reconciler doctor --account $CLOUDFLARE_ACCOUNT_ID --dispatch-namespace customers --write-probe --output json`,
	}
	f := clihelp.CommandFlags(cmd, a.env)
	df.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runDoctor(ctx, a, f, &df) })
	return cmd
}

func runDoctor(ctx context.Context, a *app, f *clihelp.Flags, df *doctorFlags) error {
	stdout, e := a.stdout, a.env
	if err := f.NoArgs(""); err != nil {
		return err
	}
	if err := df.validate(f); err != nil {
		return err
	}
	creds, err := credentials(e, df.api.baseURL)
	if err != nil {
		return err
	}
	// A doctor run makes a few dozen requests at most: a budget of its own
	// (--rate-limit) is enough and needs no running pipeline.
	lim, err := ratelimit.NewLimiter(df.api.budget, df.api.window, df.api.maxWrites)
	if err != nil {
		return clihelp.Usagef("%s: %v", f.Label("rate-limit"), err)
	}
	rec := &doctor.Recorder{}
	client, err := df.api.spec().Client(creds, lim, rec.Hooks(cfapi.Hooks{}), time.Minute)
	if err != nil {
		return err
	}
	rep := doctor.Run(ctx, doctor.Options{Client: client, Recorder: rec, AccountID: df.account, Namespace: df.namespace,
		TokenAuth: creds.Token != "", WriteProbe: df.writeProbe, KVNamespaceID: df.kvID})
	if df.output == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	switch {
	case rep.Interrupted:
		return &failedError{msg: "doctor: interrupted before every check ran"}
	case !rep.OK:
		return &failedError{msg: fmt.Sprintf("doctor: %d checks failed", rep.Failed())}
	}
	return nil
}
