package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Names of the checks, as reports show them.
const (
	CheckToken        = "token"
	CheckScriptList   = "script-list"
	CheckListCursor   = "list-cursor"
	CheckRateLimit    = "ratelimit-headers"
	CheckUpload       = "probe-upload"
	CheckTypeName     = "settings-typename"
	CheckModifiedOn   = "modified-on"
	CheckVersions     = "versions-deployments"
	CheckCleanup      = "cleanup"
	probeModule       = "worker.js"
	probeCompatDate   = "2025-01-01"
	bindingPlain      = "DOCTOR_PLAIN"
	bindingSecret     = "DOCTOR_SECRET"
	bindingKV         = "DOCTOR_KV"
	bindingAdded      = "DOCTOR_ADDED"
	bindingVersion    = "DOCTOR_VERSION"
	probeTagFilter    = "reconciler-doctor-probe:no"
	strategyAdvice    = "set --default-strategy version (RECONCILER_DEFAULT_STRATEGY=version): a version carries every value with inherit entries; the reconciler also switches to it by itself after the first refusal (reconciler_strategy_fallbacks_total)"
	listFallbackHint  = "resync and backfill --skip-unmodified cannot use the listing: they read every script (one GET settings each) and say so once in the log; backfill --dispatch-namespace can reach only the scripts the reconciler already knows, so give backfill --from FILE; budget the extra reads"
	probeModuleSource = "export default { fetch() { return new Response(\"reconciler doctor probe\"); } };\n"
)

// Checks returns the table of checks in the order they run.
func Checks() []Check {
	return []Check{
		{Name: CheckToken, Proves: "the API token is valid and active (GET /user/tokens/verify)", Run: checkToken},
		{Name: CheckScriptList, Proves: "the dispatch namespace script list is served and takes limit and tags", Run: checkScriptList},
		{Name: CheckListCursor, Proves: "the script list pages with result_info.cursor", Run: checkListCursor},
		{Name: CheckRateLimit, Proves: "answers carry the Ratelimit and Ratelimit-Policy headers", Run: checkRateLimit},
		{Name: CheckUpload, Proves: "a script upload with bindings works (the script strategy; creates the probe script)", Write: true, Run: checkUpload},
		{Name: CheckTypeName, Proves: "a settings PATCH with {type, name} entries keeps the values of a secret and a non-secret binding", Write: true, Run: checkTypeName},
		{Name: CheckModifiedOn, Proves: "a script's modified_on moves after a settings PATCH (what --skip-unmodified and resync rely on)", Write: true, Run: checkModifiedOn},
		{Name: CheckVersions, Proves: "a version upload with inherit entries and its deployment at 100% work and keep the values (the version strategy)", Write: true, Run: checkVersions},
	}
}

func checkToken(ctx context.Context, s *session) Outcome {
	if !s.opts.TokenAuth {
		return Outcome{Status: StatusSkip, Seen: "email and key authentication: there is no token to verify",
			Do: "prefer an API token (CLOUDFLARE_API_TOKEN) scoped to the account's Workers Scripts"}
	}
	t, err := s.api.VerifyToken(ctx)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: errText(err), Do: authAdvice(err)}
	}
	if t.Status != "active" {
		return Outcome{Status: StatusFail, Seen: fmt.Sprintf("the token's status is %q", t.Status),
			Do: "use an active token (CLOUDFLARE_API_TOKEN); this one is disabled or expired"}
	}
	seen := "the token is active"
	if t.ExpiresOn != "" {
		seen += ", expires " + t.ExpiresOn
	}
	return Outcome{Status: StatusOK, Seen: seen}
}

// authAdvice says what to check after a refused request.
func authAdvice(err error) string {
	var ae *cfapi.APIError
	if errors.As(err, &ae) && ae.AuthFailed() {
		return "check CLOUDFLARE_API_TOKEN: the API refused it"
	}
	return "check --api-base-url and the network; run again"
}

func checkScriptList(ctx context.Context, s *session) Outcome {
	if s.opts.Namespace == "" {
		return Outcome{Status: StatusSkip, Seen: "no --dispatch-namespace given"}
	}
	s.listRan = true
	s.listPage, s.listCursor, s.listErr = s.api.ListScripts(ctx, s.opts.AccountID, s.opts.Namespace,
		cfapi.ListScriptsOptions{Limit: 1, Tags: []string{probeTagFilter}})
	err := s.listErr
	var ae *cfapi.APIError
	switch {
	case err == nil || errors.Is(err, cfapi.ErrListCursorMissing):
		return Outcome{Status: StatusOK, Seen: fmt.Sprintf("GET …/dispatch/namespaces/%s/scripts?limit=1&tags=… answered %d script(s)", s.opts.Namespace, len(s.listPage))}
	case cfapi.IsListUnsupported(err):
		return Outcome{Status: StatusFail, Seen: "the list is not served: " + errText(err), Do: listFallbackHint}
	case errors.As(err, &ae) && ae.CodeIs(cfapi.CodeDispatchNotFound):
		return Outcome{Status: StatusFail, Seen: errText(err), Do: "check --dispatch-namespace and --account: the namespace does not exist there"}
	case errors.As(err, &ae) && ae.StatusCode == 400:
		return Outcome{Status: StatusFail, Seen: "limit or tags refused: " + errText(err), Do: "backfill --tag cannot filter on this API; " + listFallbackHint}
	}
	return Outcome{Status: StatusFail, Seen: errText(err), Do: authAdvice(err)}
}

func checkListCursor(ctx context.Context, s *session) Outcome {
	switch {
	case !s.listRan:
		return Outcome{Status: StatusSkip, Seen: "no --dispatch-namespace given"}
	case errors.Is(s.listErr, cfapi.ErrListCursorMissing):
		return Outcome{Status: StatusFail, Seen: "a full page of 1 came without result_info.cursor: the list cannot be continued", Do: listFallbackHint}
	case s.listErr != nil:
		return Outcome{Status: StatusSkip, Seen: "the list was not served (script-list)"}
	case s.listCursor == "" && len(s.listPage) == 0:
		return Outcome{Status: StatusOK, Seen: "no script on the first page (an empty namespace): nothing to page"}
	case s.listCursor == "":
		return Outcome{Status: StatusOK, Seen: "result_info.cursor is \"\" after the only script: one page"}
	}
	page, _, err := s.api.ListScripts(ctx, s.opts.AccountID, s.opts.Namespace,
		cfapi.ListScriptsOptions{Limit: 1, Tags: []string{probeTagFilter}, Cursor: s.listCursor})
	if err != nil && !errors.Is(err, cfapi.ErrListCursorMissing) {
		return Outcome{Status: StatusFail, Seen: "the second page was refused: " + errText(err), Do: listFallbackHint}
	}
	if len(page) > 0 && len(s.listPage) > 0 && page[0].ID == s.listPage[0].ID {
		return Outcome{Status: StatusFail, Seen: "the cursor led to the same script again", Do: listFallbackHint}
	}
	return Outcome{Status: StatusOK, Seen: fmt.Sprintf("result_info.cursor led to a second page of %d script(s)", len(page))}
}

func checkRateLimit(_ context.Context, s *session) Outcome {
	answers, views, policies, v, ignored := s.opts.Recorder.rateLimit()
	const keep = "keep --rate-limit REQUESTS/DURATION explicit (the token's real budget, e.g. 1200/5m): --rate-limit auto would stay at its conservative start"
	note := ""
	if len(ignored) > 0 {
		note = " (unusable parts: " + strings.Join(ignored, "; ") + ")"
	}
	switch {
	case answers == 0:
		return Outcome{Status: StatusSkip, Seen: "no answer arrived to look at"}
	case views == 0:
		return Outcome{Status: StatusFail, Seen: fmt.Sprintf("none of %d answers carried a usable Ratelimit header%s", answers, note), Do: keep}
	case policies == 0:
		return Outcome{Status: StatusFail, Seen: fmt.Sprintf("%d of %d answers carried Ratelimit, none a usable Ratelimit-Policy%s", views, answers, note), Do: keep}
	}
	return Outcome{Status: StatusOK,
		Seen: fmt.Sprintf("%d of %d answers carried them; last: %q remaining %d, resets in %s; policy %d per %s",
			policies, answers, v.Name, v.Remaining, v.Reset, v.Quota, v.Window),
		Do: "--rate-limit auto is safe: the budget follows the Ratelimit-Policy less --rate-reserve"}
}

// probeBindings are the probe script's bindings with their values.
func (s *session) probeBindings() (wire.Bindings, error) {
	var out wire.Bindings
	add := func(typ, name string, fields map[string]any) error {
		b, err := wire.NewBinding(typ, name, fields)
		if err == nil {
			out = append(out, b)
		}
		return err
	}
	if err := add(wire.TypePlainText, bindingPlain, map[string]any{"text": s.plain}); err != nil {
		return nil, err
	}
	if err := add(wire.TypeSecretText, bindingSecret, map[string]any{"text": s.secret}); err != nil {
		return nil, err
	}
	if s.opts.KVNamespaceID != "" {
		if err := add(wire.TypeKVNamespace, bindingKV, map[string]any{"namespace_id": s.opts.KVNamespaceID}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *session) modules() []cfapi.Module {
	return []cfapi.Module{{Name: probeModule, ContentType: "application/javascript+module", Data: []byte(probeModuleSource)}}
}

func checkUpload(ctx context.Context, s *session) Outcome {
	bs, err := s.probeBindings()
	if err != nil {
		return Outcome{Status: StatusFail, Seen: err.Error()}
	}
	compat, _ := json.Marshal(probeCompatDate)
	s.attempted = true
	_, err = s.api.UploadScript(ctx, s.ref, cfapi.ScriptUpload{
		Metadata: cfapi.UploadMetadata{MainModule: probeModule, Bindings: bs, Other: map[string]json.RawMessage{"compatibility_date": compat}},
		Modules:  s.modules(),
	})
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "uploading " + s.ref.String() + ": " + errText(err),
			Do: "the token needs Workers Scripts Edit on the account; without uploads the script strategy cannot work"}
	}
	s.created = true
	return Outcome{Status: StatusOK, Seen: fmt.Sprintf("uploaded %s with %d bindings", s.ref, len(bs))}
}

// needScript is the outcome of a check that needs the probe script when
// there is none.
func (s *session) needScript() (Outcome, bool) {
	if s.created {
		return Outcome{}, false
	}
	return Outcome{Status: StatusSkip, Seen: "no probe script (" + CheckUpload + " failed)"}, true
}

// keptValues compares the probe script's live bindings with the values it
// was given and returns what differs ("" when everything was kept).
func (s *session) keptValues(live wire.Bindings) string {
	var bad []string
	if b, ok := live.ByName(bindingPlain); !ok {
		bad = append(bad, bindingPlain+" is gone")
	} else if v, _ := b.String("text"); v != s.plain {
		bad = append(bad, bindingPlain+"'s text changed")
	}
	if b, ok := live.ByName(bindingSecret); !ok || b.Type() != wire.TypeSecretText {
		bad = append(bad, bindingSecret+" (secret_text) is gone")
	}
	if s.opts.KVNamespaceID != "" {
		if b, ok := live.ByName(bindingKV); !ok {
			bad = append(bad, bindingKV+" is gone")
		} else if v, _ := b.String("namespace_id"); v != s.opts.KVNamespaceID {
			bad = append(bad, bindingKV+"'s namespace_id changed")
		}
	}
	return strings.Join(bad, "; ")
}

func checkTypeName(ctx context.Context, s *session) Outcome {
	if o, skip := s.needScript(); skip {
		return o
	}
	added, err := wire.NewBinding(wire.TypePlainText, bindingAdded, map[string]any{"text": "added"})
	if err != nil {
		return Outcome{Status: StatusFail, Seen: err.Error()}
	}
	refs := wire.Bindings{wire.Ref(wire.TypePlainText, bindingPlain), wire.Ref(wire.TypeSecretText, bindingSecret)}
	if s.opts.KVNamespaceID != "" {
		refs = append(refs, wire.Ref(wire.TypeKVNamespace, bindingKV))
	}
	sent := append(refs, added)
	_, err = s.api.PatchSettings(ctx, s.ref, cfapi.SettingsPatch{Bindings: sent})
	if name, refused := cfapi.TypeNameRefused(err, sent); refused {
		return Outcome{Status: StatusFail, Seen: "the PATCH refused the {type, name} entry of " + name + ": " + errText(err), Do: strategyAdvice}
	}
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "PATCH …/settings: " + errText(err), Do: authAdvice(err)}
	}
	st, err := s.api.GetSettings(ctx, s.ref)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "reading the settings back: " + errText(err), Do: authAdvice(err)}
	}
	if _, ok := st.Bindings.ByName(bindingAdded); !ok {
		return Outcome{Status: StatusFail, Seen: "the PATCH was accepted but " + bindingAdded + " is not live", Do: strategyAdvice}
	}
	if bad := s.keptValues(st.Bindings); bad != "" {
		return Outcome{Status: StatusFail, Seen: "the PATCH was accepted but did not keep the values: " + bad,
			Do: "never use --default-strategy settings here: " + strategyAdvice}
	}
	return Outcome{Status: StatusOK, Seen: fmt.Sprintf("{type, name} kept %d values; the new binding is live", len(refs))}
}

func checkModifiedOn(ctx context.Context, s *session) Outcome {
	if o, skip := s.needScript(); skip {
		return o
	}
	if !s.ref.Dispatch() {
		return Outcome{Status: StatusSkip, Seen: "no --dispatch-namespace: the reconciler compares modified_on only from a namespace's list"}
	}
	before, err := s.api.GetScriptDetails(ctx, s.ref)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "GET the script's details: " + errText(err), Do: "--skip-unmodified cannot be trusted until this works"}
	}
	// The PATCH sends every value, so it does not depend on {type, name}.
	bs, err := s.probeBindings()
	if err != nil {
		return Outcome{Status: StatusFail, Seen: err.Error()}
	}
	if _, err := s.api.PatchSettings(ctx, s.ref, cfapi.SettingsPatch{Bindings: bs}); err != nil {
		return Outcome{Status: StatusFail, Seen: "PATCH …/settings with full values: " + errText(err), Do: authAdvice(err)}
	}
	after, err := s.api.GetScriptDetails(ctx, s.ref)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "GET the script's details after the PATCH: " + errText(err), Do: "--skip-unmodified cannot be trusted until this works"}
	}
	if before.ModifiedOn == "" || after.ModifiedOn == before.ModifiedOn {
		return Outcome{Status: StatusFail, Seen: fmt.Sprintf("modified_on %q before and %q after a settings PATCH", before.ModifiedOn, after.ModifiedOn),
			Do: "do not use backfill --skip-unmodified: a settings change would not be seen"}
	}
	return Outcome{Status: StatusOK, Seen: fmt.Sprintf("modified_on moved from %s to %s", before.ModifiedOn, after.ModifiedOn)}
}

func checkVersions(ctx context.Context, s *session) Outcome {
	if o, skip := s.needScript(); skip {
		return o
	}
	st, err := s.api.GetSettings(ctx, s.ref)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "reading the settings: " + errText(err), Do: authAdvice(err)}
	}
	added, err := wire.NewBinding(wire.TypePlainText, bindingVersion, map[string]any{"text": "version"})
	if err != nil {
		return Outcome{Status: StatusFail, Seen: err.Error()}
	}
	var bs wire.Bindings
	for _, b := range st.Bindings {
		if b.Name() != bindingVersion {
			bs = append(bs, wire.Inherit(b.Name()))
		}
	}
	bs = append(bs, added)
	id, route, err := s.newVersion(ctx, bs)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: route + ": " + errText(err),
			Do: "the version strategy cannot work here: use --default-strategy script, and check the token may edit Workers Scripts"}
	}
	deps, err := s.api.ListDeployments(ctx, s.ref)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "GET …/deployments: " + errText(err), Do: "split checks (gradual deployments) cannot work: do not set the split check flags"}
	}
	if len(deps) == 0 || len(deps[0].Versions) != 1 || deps[0].Versions[0].VersionID != id || deps[0].Versions[0].Percentage != 100 {
		return Outcome{Status: StatusFail, Seen: fmt.Sprintf("the active deployment is not version %s at 100%%: %s", id, describeDeployments(deps)),
			Do: "use --default-strategy script: a version was not deployed as asked"}
	}
	after, err := s.api.GetSettings(ctx, s.ref)
	if err != nil {
		return Outcome{Status: StatusFail, Seen: "reading the settings back: " + errText(err), Do: authAdvice(err)}
	}
	if _, ok := after.Bindings.ByName(bindingVersion); !ok {
		return Outcome{Status: StatusFail, Seen: "the deployed version's new binding is not live", Do: "use --default-strategy script"}
	}
	if bad := s.keptValues(after.Bindings); bad != "" {
		return Outcome{Status: StatusFail, Seen: "inherit entries did not keep the values: " + bad, Do: "use --default-strategy script"}
	}
	return Outcome{Status: StatusOK, Seen: fmt.Sprintf("%s; GET …/deployments shows it at 100%%; inherit kept the values", route)}
}

// newVersion creates a version of the probe script with bs and deploys it
// at 100% the way the version strategy does for the script's kind, and
// returns its id and the route taken.
func (s *session) newVersion(ctx context.Context, bs wire.Bindings) (id, route string, err error) {
	if s.ref.Dispatch() {
		compat, _ := json.Marshal(probeCompatDate)
		v, err := s.api.CreateVersion(ctx, s.ref, cfapi.ScriptUpload{
			Metadata: cfapi.UploadMetadata{MainModule: probeModule, Bindings: bs, Other: map[string]json.RawMessage{"compatibility_date": compat}},
			Modules:  s.modules(),
		})
		if err != nil {
			return "", "POST …/versions", err
		}
		if _, err := s.api.DeployVersion(ctx, s.ref, v.ID, "reconciler doctor"); err != nil {
			return "", "POST …/deployments", err
		}
		return v.ID, "POST …/versions, then …/deployments", nil
	}
	v, err := s.api.CreateWorkerVersion(ctx, s.ref, cfapi.NewWorkerVersion{MainModule: probeModule,
		Modules:  []cfapi.WorkerModule{{Name: probeModule, ContentType: "application/javascript+module", Content: []byte(probeModuleSource)}},
		Bindings: bs, CompatibilityDate: probeCompatDate, Annotations: map[string]string{cfapi.AnnotationMessage: "reconciler doctor"}}, true)
	if err != nil {
		return "", "POST …/workers/workers/{name}/versions?deploy=true", err
	}
	return v.ID, "POST …/workers/workers/{name}/versions?deploy=true", nil
}

func describeDeployments(deps []cfapi.ScriptDeployment) string {
	if len(deps) == 0 {
		return "no deployment"
	}
	var parts []string
	for _, v := range deps[0].Versions {
		parts = append(parts, fmt.Sprintf("%s at %g%%", v.VersionID, v.Percentage))
	}
	return "active: " + strings.Join(parts, ", ")
}
