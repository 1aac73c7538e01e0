package cfapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// This file holds the beta Workers API (JSON versions under
// /accounts/{a}/workers/workers/{worker}) and the deployments of a script:
// what a version strategy needs to write a change in one request and to
// notice a gradual (split) deployment. Every body is JSON built once, so a
// retry resends the same bytes.

// WorkerModule is one module of a version: code, a source map, wasm or
// text. On the wire Content is "content_base64".
type WorkerModule struct {
	Name        string
	ContentType string
	Content     []byte
}

type workerModuleJSON struct {
	Name          string `json:"name"`
	ContentType   string `json:"content_type"`
	ContentBase64 string `json:"content_base64"`
}

// MarshalJSON encodes the module as {name, content_type, content_base64}.
func (m WorkerModule) MarshalJSON() ([]byte, error) {
	return json.Marshal(workerModuleJSON{Name: m.Name, ContentType: m.ContentType,
		ContentBase64: base64.StdEncoding.EncodeToString(m.Content)})
}

// UnmarshalJSON decodes {name, content_type, content_base64}.
func (m *WorkerModule) UnmarshalJSON(data []byte) error {
	var j workerModuleJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	content, err := base64.StdEncoding.DecodeString(j.ContentBase64)
	if err != nil {
		return fmt.Errorf("module %q: content_base64: %w", j.Name, err)
	}
	*m = WorkerModule{Name: j.Name, ContentType: j.ContentType, Content: content}
	return nil
}

// NewWorkerVersion is the body of a beta version: the complete code,
// bindings and versioned settings of the new version. Settings it omits
// are not carried over from the previous version.
type NewWorkerVersion struct {
	// MainModule names the module among Modules that exports the handlers.
	MainModule string
	Modules    []WorkerModule
	// Bindings is the full binding set. InheritFrom carries a binding
	// (a secret, say) over from the latest or a given version without its
	// value, optionally renaming it; one that cannot be resolved fails the
	// request with code 10057.
	Bindings           wire.Bindings
	CompatibilityDate  string
	CompatibilityFlags []string
	// Annotations: "workers/message" (cut to MaxAnnotationMessage bytes
	// here, as the API would) and "workers/tag" (cut to MaxAnnotationTag);
	// other keys are not in the API reference's request and are not sent.
	Annotations map[string]string
	// Other holds further members sent as they are (limits, placement,
	// usage_model, assets, migrations, ...).
	Other map[string]json.RawMessage
}

// InheritFrom returns an inherit entry: binding name takes the value of
// binding oldName ("" = the same name) of version versionID ("" = the
// latest version).
func InheritFrom(name, oldName, versionID string) wire.Binding {
	fields := map[string]any{}
	if oldName != "" && oldName != name {
		fields["old_name"] = oldName
	}
	if versionID != "" {
		fields["version_id"] = versionID
	}
	if len(fields) == 0 {
		return wire.Inherit(name)
	}
	b, err := wire.NewBinding(wire.TypeInherit, name, fields)
	if err != nil {
		panic(err) // strings always marshal
	}
	return b
}

// JSON returns the request body with sorted member names. It fails when
// the main module is not among the modules, a module has no name or
// content type, or a name repeats.
func (v NewWorkerVersion) JSON() ([]byte, error) {
	if v.MainModule == "" {
		return nil, errors.New("version: main_module is required")
	}
	seen := map[string]bool{}
	for i, m := range v.Modules {
		switch {
		case m.Name == "":
			return nil, fmt.Errorf("version: modules[%d] has no name", i)
		case m.ContentType == "":
			return nil, fmt.Errorf("version: module %q has no content type", m.Name)
		case seen[m.Name]:
			return nil, fmt.Errorf("version: module %q is listed twice", m.Name)
		}
		seen[m.Name] = true
	}
	if !seen[v.MainModule] {
		return nil, fmt.Errorf("version: main module %q is not among the modules", v.MainModule)
	}
	members := make(map[string]any, len(v.Other)+6)
	for k, raw := range v.Other {
		if !json.Valid(raw) {
			return nil, fmt.Errorf("version: member %q is not valid JSON", k)
		}
		members[k] = raw
	}
	members["main_module"] = v.MainModule
	members["modules"] = v.Modules
	bs := v.Bindings
	if bs == nil {
		bs = wire.Bindings{}
	}
	members["bindings"] = bs
	if v.CompatibilityDate != "" {
		members["compatibility_date"] = v.CompatibilityDate
	}
	if v.CompatibilityFlags != nil {
		members["compatibility_flags"] = v.CompatibilityFlags
	}
	if a := specAnnotations(v.Annotations, ScriptRef{}, annotationsVersion); len(a) > 0 {
		members["annotations"] = a
	}
	return json.Marshal(members) // maps marshal with sorted keys
}

// WorkerVersion is a version as the beta API returns it.
type WorkerVersion struct {
	ID                 string            `json:"id"`
	Number             int               `json:"number"`
	CreatedOn          time.Time         `json:"created_on"`
	MainModule         string            `json:"main_module"`
	Bindings           wire.Bindings     `json:"bindings"`
	CompatibilityDate  string            `json:"compatibility_date"`
	CompatibilityFlags []string          `json:"compatibility_flags"`
	Annotations        map[string]string `json:"annotations"`
	// Modules are returned only when asked for (GetWorkerVersion with
	// includeModules).
	Modules []WorkerModule `json:"modules"`
	Source  string         `json:"source"`
	// Other holds the remaining members (limits, placement, usage_model,
	// migration_tag, urls, startup_time_ms, ...).
	Other map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the known members and keeps the others in Other.
func (v *WorkerVersion) UnmarshalJSON(data []byte) error {
	type plain WorkerVersion
	if err := json.Unmarshal(data, (*plain)(v)); err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	for _, k := range []string{"id", "number", "created_on", "main_module", "bindings", "compatibility_date",
		"compatibility_flags", "annotations", "modules", "source"} {
		delete(m, k)
	}
	v.Other = m
	return nil
}

// workerPath is the escaped path of a Worker in the beta API; the beta API
// addresses ordinary Workers only.
func workerPath(ref ScriptRef) (string, error) {
	if ref.Dispatch() {
		return "", fmt.Errorf("%s: the beta Workers API has no dispatch namespace scripts", ref)
	}
	return "/accounts/" + url.PathEscape(ref.AccountID) + "/workers/workers/" + url.PathEscape(ref.Script), nil
}

// staticJSON returns a body builder that sends data on every attempt.
func staticJSON(data []byte) func() (io.Reader, string, error) {
	return func() (io.Reader, string, error) { return bytes.NewReader(data), "application/json", nil }
}

// CreateWorkerVersion creates a version of an ordinary Worker in one JSON
// request: POST …/workers/workers/{worker}/versions. With deploy the API
// also deploys it to 100% of traffic (?deploy=true), so one write replaces
// the version upload and the deployment.
func (c *Client) CreateWorkerVersion(ctx context.Context, ref ScriptRef, v NewWorkerVersion, deploy bool) (*WorkerVersion, error) {
	path, err := workerPath(ref)
	if err != nil {
		return nil, err
	}
	body, err := v.JSON()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	var q url.Values
	if deploy {
		q = url.Values{"deploy": {"true"}}
	}
	var out WorkerVersion
	if err := c.doJSON(ctx, call{endpoint: EPCreateWorkerVersion, method: "POST", path: path + "/versions", query: q,
		write: true, body: staticJSON(body)}, &out); err != nil {
		return nil, err
	}
	if out.ID == "" {
		return nil, fmt.Errorf("version of %s: response has no version id", ref)
	}
	return &out, nil
}

// GetWorkerVersion reads one version of an ordinary Worker ("latest" names
// the latest): GET …/workers/workers/{worker}/versions/{id}, with the
// modules when includeModules (?include=modules; they may be megabytes).
func (c *Client) GetWorkerVersion(ctx context.Context, ref ScriptRef, versionID string, includeModules bool) (*WorkerVersion, error) {
	path, err := workerPath(ref)
	if err != nil {
		return nil, err
	}
	if versionID == "" {
		return nil, fmt.Errorf("version of %s: empty version id", ref)
	}
	var q url.Values
	if includeModules {
		q = url.Values{"include": {"modules"}}
	}
	var out WorkerVersion
	if err := c.doJSON(ctx, call{endpoint: EPGetWorkerVersion, method: "GET",
		path: path + "/versions/" + url.PathEscape(versionID), query: q, maxBody: 128 << 20}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PageInfo is the result_info of a paginated list.
type PageInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
}

// ListWorkerVersions lists the versions of an ordinary Worker, newest
// first, one page at a time (page from 1; perPage 0 = the API's default):
// GET …/workers/workers/{worker}/versions.
func (c *Client) ListWorkerVersions(ctx context.Context, ref ScriptRef, page, perPage int) ([]WorkerVersion, PageInfo, error) {
	path, err := workerPath(ref)
	if err != nil {
		return nil, PageInfo{}, err
	}
	q := url.Values{}
	if page > 0 {
		q.Set("page", strconv.Itoa(page))
	}
	if perPage > 0 {
		q.Set("per_page", strconv.Itoa(perPage))
	}
	cl := call{endpoint: EPListWorkerVersions, method: "GET", path: path + "/versions", query: q}
	env, err := c.do(ctx, cl)
	if err != nil {
		return nil, PageInfo{}, err
	}
	var out []WorkerVersion
	if err := env.decodeResult(cl, &out); err != nil {
		return nil, PageInfo{}, err
	}
	var info PageInfo
	if len(env.ResultInfo) > 0 && string(env.ResultInfo) != "null" {
		if err := json.Unmarshal(env.ResultInfo, &info); err != nil {
			return nil, PageInfo{}, fmt.Errorf("versions of %s: result_info: %w", ref, err)
		}
	}
	return out, info, nil
}

// DeploymentShare is one version of a deployment and its share of traffic
// in percent.
type DeploymentShare struct {
	VersionID  string  `json:"version_id"`
	Percentage float64 `json:"percentage"`
}

// ScriptDeployment is a deployment: the one or two versions that serve a
// script's traffic.
type ScriptDeployment struct {
	ID          string            `json:"id"`
	Source      string            `json:"source"`
	Strategy    string            `json:"strategy"`
	AuthorEmail string            `json:"author_email"`
	CreatedOn   time.Time         `json:"created_on"`
	Versions    []DeploymentShare `json:"versions"`
	Annotations map[string]string `json:"annotations"`
}

// Split reports whether the deployment splits traffic between two versions
// (a gradual deployment in progress).
func (d ScriptDeployment) Split() bool { return len(d.Versions) > 1 }

// ListDeployments reads a script's most recent deployments, the active one
// first: GET …/scripts/{script}/deployments (both flavours). A script in
// a gradual deployment has an active deployment with two versions.
func (c *Client) ListDeployments(ctx context.Context, ref ScriptRef) ([]ScriptDeployment, error) {
	var res struct {
		Deployments []ScriptDeployment `json:"deployments"`
	}
	if err := c.doJSON(ctx, call{endpoint: EPListDeployments, method: "GET", path: ref.scriptPath() + "/deployments"}, &res); err != nil {
		return nil, err
	}
	return res.Deployments, nil
}

// CreateDeployment routes a script's traffic to one or two versions with
// the given shares (which must add up to 100), so a split can be
// re-created with new versions: POST …/scripts/{script}/deployments.
// Of annotations only what the API reference lists for a deployment is
// sent (workers/message, cut to MaxAnnotationMessage bytes; none on a
// dispatch namespace script).
func (c *Client) CreateDeployment(ctx context.Context, ref ScriptRef, shares []DeploymentShare, annotations map[string]string) (*ScriptDeployment, error) {
	if len(shares) < 1 || len(shares) > 2 {
		return nil, fmt.Errorf("deployment of %s: want one or two versions, got %d", ref, len(shares))
	}
	sum := 0.0
	for _, s := range shares {
		if s.VersionID == "" {
			return nil, fmt.Errorf("deployment of %s: a version without id", ref)
		}
		sum += s.Percentage
	}
	if sum < 99.999 || sum > 100.001 {
		return nil, fmt.Errorf("deployment of %s: percentages add up to %v, want 100", ref, sum)
	}
	body := map[string]any{"strategy": "percentage", "versions": shares}
	if ann := specAnnotations(annotations, ref, annotationsDeployment); len(ann) > 0 {
		body["annotations"] = ann
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var d ScriptDeployment
	if err := c.doJSON(ctx, call{endpoint: EPPostDeployment, method: "POST", path: ref.scriptPath() + "/deployments",
		write: true, body: staticJSON(data)}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
