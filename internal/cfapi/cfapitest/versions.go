package cfapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Codes of edits that build on the latest version (settings PATCH, secret
// edits) while it is not deployed: the texts wrangler and users report
// (workers-sdk #12392, #10585; wrangler's VERSION_*_NOT_DEPLOYED codes).
const (
	CodeSettingsNotDeployed = 10214
	CodeSecretNotDeployed   = 10215

	messageSettingsNotDeployed = "Script edit failed. You attempted to deploy the latest version with modified settings, " +
		"but the latest version isn't currently deployed. Either upload a new version to edit the version settings, " +
		`or use the script-level settings API (/workers/scripts/{script_name}/script-settings) to modify the "logpush" and "tail_consumers" settings.`
	messageSecretNotDeployed = "Secret edit failed. You attempted to modify a secret, but the latest version of your Worker isn't currently deployed."
)

// editBase returns the version that a settings PATCH or a secret edit
// builds on: the latest version, which must be deployed. code is
// CodeSettingsNotDeployed or CodeSecretNotDeployed. When the latest version
// shares a split deployment, Options.SplitEdits decides. The caller holds
// s.mu.
func (s *store) editBase(sc *script, code int) (*Version, *Error) {
	latest := sc.latest()
	msg := messageSettingsNotDeployed
	if code == CodeSecretNotDeployed {
		msg = messageSecretNotDeployed
	}
	refuse := &Error{Status: http.StatusBadRequest, Code: code, Message: msg}
	if latest == nil || sc.deployment == nil {
		return nil, refuse
	}
	if !slices.ContainsFunc(sc.deployment.Versions, func(dv DeploymentVersion) bool { return dv.VersionID == latest.ID }) {
		return nil, refuse
	}
	if len(sc.deployment.Versions) > 1 && s.opts.SplitEdits == SplitEditReject {
		return nil, refuse
	}
	return latest, nil
}

// derive returns a copy of base with other bindings and settings, ready to
// be stored by addVersion as a new version from source.
func derive(base *Version, bindings []wire.Binding, settings map[string]json.RawMessage, source, triggeredBy string) Version {
	return Version{MainModule: base.MainModule, BodyPart: base.BodyPart, Modules: base.Modules,
		Bindings: bindings, Settings: settings, Source: source,
		Annotations: withTriggeredBy(nil, triggeredBy)}
}

// sourceOf tells where a request comes from, as versions and deployments
// record it: "wrangler" for a wrangler User-Agent, "api" otherwise.
func sourceOf(r *http.Request) string {
	if strings.HasPrefix(strings.ToLower(r.UserAgent()), "wrangler") {
		return sourceWrangler
	}
	return sourceAPI
}

// withTriggeredBy returns the annotations a with "workers/triggered_by"
// set to by unless a sets it; by "" leaves a as it is.
func withTriggeredBy(a json.RawMessage, by string) json.RawMessage {
	m := map[string]json.RawMessage{}
	if t := bytes.TrimSpace(a); len(t) > 0 && !isNull(t) {
		if json.Unmarshal(t, &m) != nil {
			return a
		}
	}
	if _, ok := m["workers/triggered_by"]; !ok && by != "" {
		m["workers/triggered_by"] = jsonString(by)
	}
	if len(m) == 0 {
		return nil
	}
	out, _ := json.Marshal(m)
	return out
}

// versionResult renders a version as the ordinary versions API returns it
// (POST and GET …/versions[/{id}]). The caller holds s.mu.
func versionResult(p params, sc *script, v *Version) map[string]any {
	runtime := map[string]any{"compatibility_flags": json.RawMessage(`[]`), "usage_model": json.RawMessage(`"standard"`),
		"limits": json.RawMessage(`{}`)}
	for k, val := range v.Settings {
		runtime[k] = val
	}
	created := timestamp(v.CreatedOn)
	return map[string]any{
		"id":     v.ID,
		"number": v.Number,
		"metadata": map[string]any{
			"author_email": "", "author_id": "", "created_on": created, "modified_on": created,
			"source": v.Source, "hasPreview": sc.previews, "has_preview": sc.previews,
		},
		"annotations": annotationsOrEmpty(v.Annotations),
		"resources": map[string]any{
			"bindings":       RenderForGet(p.account, p.script, v.Bindings),
			"script":         map[string]any{"etag": v.ETag, "handlers": []string{"fetch"}},
			"script_runtime": runtime,
		},
		"startup_time_ms": 1,
	}
}

// deploymentResult renders a deployment as POST and GET …/deployments
// return it.
func deploymentResult(d *Deployment) map[string]any {
	return map[string]any{
		"id": d.ID, "source": d.Source, "strategy": d.Strategy, "author_email": "",
		"versions": d.Versions, "annotations": annotationsOrEmpty(d.Annotations), "created_on": timestamp(d.CreatedOn),
	}
}

// AddVersion stores a new version of an existing script without deploying
// it, as a version upload does: its modules, bindings (stored as given) and
// versioned settings come from sc; missing modules or settings are those
// of the latest version. It returns the version id.
func (s *Server) AddVersion(account, namespace, name string, sc Script) (string, error) {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	p := params{account: account, namespace: namespace, script: name}
	st, err := s.db.lookupScript(p)
	if err != nil {
		return "", err
	}
	base := st.latest()
	v := Version{MainModule: base.MainModule, BodyPart: base.BodyPart, Modules: base.Modules,
		Bindings: slices.Clone(sc.Bindings), Settings: maps.Clone(base.Settings)}
	if len(sc.Modules) > 0 {
		v.MainModule, v.BodyPart, v.Modules = sc.MainModule, sc.BodyPart, cloneModules(sc.Modules)
		if v.MainModule == "" && v.BodyPart == "" {
			v.MainModule = v.Modules[0].Name
		}
	}
	applySettings(v.Settings, versioned(sc.Settings))
	return s.db.addVersion(st, v).ID, nil
}

// Deploy routes a script's traffic to one or two of its versions, as
// POST …/deployments does: with two, a split deployment (each version keeps
// its own bindings; the live state is the larger share's).
func (s *Server) Deploy(account, namespace, name string, versions ...DeploymentVersion) error {
	if err := checkDeployment(deploymentRequest{Strategy: "percentage", Versions: versions}); err != nil {
		return err
	}
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	st, err := s.db.lookupScript(params{account: account, namespace: namespace, script: name})
	if err != nil {
		return err
	}
	for _, dv := range versions {
		if st.version(dv.VersionID) == nil {
			return fmt.Errorf("cfapitest: script %s has no version %s", name, dv.VersionID)
		}
	}
	s.db.deploy(st, &Deployment{Strategy: "percentage", Versions: slices.Clone(versions)})
	return nil
}
