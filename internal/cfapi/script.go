package cfapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Module is one part of a script: an ES module, a source map, a wasm or
// text part, with its Content-Type (application/javascript+module, ...).
type Module struct {
	Name        string
	ContentType string
	Data        []byte
}

// ScriptContent is a script's code as GET …/content returns it.
type ScriptContent struct {
	// MainModule names the entry module (module syntax), from the
	// cf-entrypoint header or else the first part.
	MainModule string
	// ServiceWorker is true for service-worker syntax: then the single
	// module is the body part.
	ServiceWorker bool
	Modules       []Module
}

// GetScriptContent reads a script's modules: GET …/content/v2 for an
// ordinary Worker and GET …/content for a dispatch namespace script. The
// answer is multipart/form-data (one part per module) or, for a
// service-worker script, the raw code.
func (c *Client) GetScriptContent(ctx context.Context, ref ScriptRef) (*ScriptContent, error) {
	path := ref.scriptPath() + "/content"
	if !ref.Dispatch() {
		path += "/v2"
	}
	var sc ScriptContent
	_, err := c.do(ctx, call{endpoint: EPGetContent, method: "GET", path: path, maxBody: 128 << 20,
		raw: func(resp *http.Response) error {
			sc = ScriptContent{}
			return readContent(resp, &sc)
		}})
	if err != nil {
		return nil, err
	}
	if len(sc.Modules) == 0 {
		return nil, fmt.Errorf("content of %s: the response holds no module", ref)
	}
	return &sc, nil
}

func readContent(resp *http.Response, sc *ScriptContent) error {
	ct := resp.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	body := io.LimitReader(resp.Body, 128<<20)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		data, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		name := "script.js"
		sc.ServiceWorker = true
		sc.MainModule = name
		if ct == "" {
			ct = "application/javascript"
		}
		sc.Modules = []Module{{Name: name, ContentType: ct, Data: data}}
		return nil
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading script content: %w", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return fmt.Errorf("reading script content: %w", err)
		}
		name := p.FormName()
		if name == "" {
			name = p.FileName()
		}
		sc.Modules = append(sc.Modules, Module{Name: name, ContentType: p.Header.Get("Content-Type"), Data: data})
	}
	sc.MainModule = resp.Header.Get("Cf-Entrypoint")
	if sc.MainModule == "" && len(sc.Modules) > 0 {
		sc.MainModule = sc.Modules[0].Name
	}
	return nil
}

// UploadMetadata is the "metadata" part of a script upload or version.
type UploadMetadata struct {
	// MainModule names the entry module (module syntax); BodyPart names the
	// script part of a service-worker upload. Exactly one is set.
	MainModule string
	BodyPart   string
	// Bindings is the explicit binding set; {"type":"inherit","name":N}
	// carries N over from the previous version.
	Bindings wire.Bindings
	// KeepBindings lists binding types to carry over from the previous
	// version in addition to Bindings (e.g. secret_text, secret_key).
	KeepBindings []string
	// Annotations are sent on versions only (workers/message, workers/tag).
	Annotations map[string]string
	// Other holds the remaining members, typically the script's settings
	// read back (compatibility_date, compatibility_flags, limits, logpush,
	// observability, placement, tags, tail_consumers, usage_model).
	Other map[string]json.RawMessage
}

// JSON encodes the metadata in wrangler's member order: main_module (or
// body_part), bindings (each binding's JSON byte for byte), the other
// members sorted, keep_bindings, annotations.
func (m UploadMetadata) JSON() ([]byte, error) {
	w := wire.NewObject(nil, true)
	if m.MainModule != "" {
		w.Str("main_module", m.MainModule)
	}
	if m.BodyPart != "" {
		w.Str("body_part", m.BodyPart)
	}
	if err := w.Bindings("bindings", m.Bindings); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	for _, k := range wire.SortedKeys(m.Other, "main_module", "body_part", "bindings", "keep_bindings", "annotations") {
		if err := w.CheckedRaw(k, m.Other[k]); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
	}
	if len(m.KeepBindings) > 0 {
		if err := w.Marshal("keep_bindings", m.KeepBindings); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
	}
	if len(m.Annotations) > 0 {
		if err := w.Marshal("annotations", m.Annotations); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
	}
	return w.Close(), nil
}

// ScriptUpload is a script PUT or version POST: metadata plus the module
// parts.
type ScriptUpload struct {
	Metadata UploadMetadata
	Modules  []Module
}

// Members of GET …/settings a code upload carries back, as the API
// reference lists them for each request: a script upload (PUT, ordinary
// and dispatch namespace) takes the script's settings; a version upload
// takes only the versioned ones it lists (no limits, placement, logpush,
// observability, tags or tail_consumers). Response-only members of GET
// (exports_reconciliation, cache_options as the API resolved it, ...) and
// migrations are never sent.
var (
	uploadSettingMembers  = []string{"compatibility_date", "compatibility_flags", "limits", "logpush", "observability", "placement", "tags", "tail_consumers", "usage_model"}
	versionSettingMembers = []string{"compatibility_date", "compatibility_flags", "usage_model"}
	// placementMembers are the members of the reference's placement
	// variants (mode, region, hostname, host, target); GET may add
	// response-only ones (status, last_analyzed_at).
	placementMembers = []string{"mode", "region", "hostname", "host", "target"}
)

// SettingsForUpload returns the settings members that a code upload must
// carry so that it changes nothing but what it means to (facts pitfall 5):
// the members of s that the API reference lists for a script upload, or
// with forVersion for a version upload (an allow-list, not an echo of
// GET). Null members and a placement without a variant member are dropped;
// placement keeps only its variant's members.
func SettingsForUpload(s *Settings, forVersion bool) map[string]json.RawMessage {
	keys := uploadSettingMembers
	if forVersion {
		keys = versionSettingMembers
	}
	out := make(map[string]json.RawMessage, len(keys))
	for _, k := range keys {
		v, ok := s.Other[k]
		if !ok || string(v) == "null" {
			continue
		}
		if k == "placement" {
			if v, ok = placementVariant(v); !ok {
				continue
			}
		}
		out[k] = v
	}
	return out
}

// placementVariant returns the placement object reduced to the members of
// the reference's variants, and false when none is present.
func placementVariant(v json.RawMessage) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) != nil {
		return nil, false
	}
	out := map[string]json.RawMessage{}
	for _, k := range placementMembers {
		if x, ok := m[k]; ok && string(x) != "null" {
			out[k] = x
		}
	}
	if len(out) == 0 {
		return nil, false
	}
	b, err := json.Marshal(out)
	return b, err == nil
}

// multipartBody builds the upload body: part "metadata" (JSON, no
// Content-Type and no filename, as wrangler sends it), then each module
// with name = filename = module name and its Content-Type.
func (u ScriptUpload) multipartBody() (func() (io.Reader, string, error), error) {
	meta, err := u.Metadata.JSON()
	if err != nil {
		return nil, err
	}
	parts := []formPart{{name: "metadata", data: meta}}
	for _, m := range u.Modules {
		if m.Name == "" {
			return nil, fmt.Errorf("script upload: a module has no name")
		}
		ct := m.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		parts = append(parts, formPart{name: m.Name, filename: m.Name, contentType: ct, data: m.Data})
	}
	return formBody(parts), nil
}

// UploadResult is the result of a script PUT.
type UploadResult struct {
	ID           string `json:"id"`
	Etag         string `json:"etag"`
	DeploymentID string `json:"deployment_id"`
	ModifiedOn   string `json:"modified_on"`
	StartupTime  int    `json:"startup_time_ms"`
}

// UploadScript uploads a script with its bindings and settings:
// PUT …/scripts/{script}?bindings_inherit=strict&excludeScript=true. A PUT
// replaces the whole binding set except inherit entries and KeepBindings
// types; strict mode makes an unresolvable inherit fail (10057) instead of
// silently dropping the binding.
func (c *Client) UploadScript(ctx context.Context, ref ScriptRef, u ScriptUpload) (*UploadResult, error) {
	u.Metadata.Annotations = specAnnotations(u.Metadata.Annotations, ref, annotationsUpload)
	body, err := u.multipartBody()
	if err != nil {
		return nil, err
	}
	var r UploadResult
	if err := c.doJSON(ctx, call{endpoint: EPPutScript, method: "PUT", path: ref.scriptPath(), write: true,
		query: url.Values{"bindings_inherit": {"strict"}, "excludeScript": {"true"}}, body: body}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Version is the result of a version upload.
type Version struct {
	ID     string `json:"id"`
	Number int    `json:"number"`
}

// CreateVersion uploads a new version without deploying it:
// POST …/scripts/{script}/versions?bindings_inherit=strict. Versions need
// module syntax (MainModule).
func (c *Client) CreateVersion(ctx context.Context, ref ScriptRef, u ScriptUpload) (*Version, error) {
	if u.Metadata.MainModule == "" {
		return nil, fmt.Errorf("version of %s: versions need a main module (module syntax)", ref)
	}
	u.Metadata.Annotations = specAnnotations(u.Metadata.Annotations, ref, annotationsVersion)
	body, err := u.multipartBody()
	if err != nil {
		return nil, err
	}
	var v Version
	if err := c.doJSON(ctx, call{endpoint: EPPostVersion, method: "POST", path: ref.scriptPath() + "/versions", write: true,
		query: url.Values{"bindings_inherit": {"strict"}}, body: body}, &v); err != nil {
		return nil, err
	}
	if v.ID == "" {
		return nil, fmt.Errorf("version of %s: response has no version id", ref)
	}
	return &v, nil
}

// Deployment is the result of a deployment.
type Deployment struct {
	ID       string `json:"id"`
	Strategy string `json:"strategy"`
}

// DeployVersion sends 100% of traffic to one version:
// POST …/scripts/{script}/deployments. message becomes the deployment's
// workers/message (cut to MaxAnnotationMessage bytes) on an ordinary
// Worker; a dispatch namespace script gets no annotations.
func (c *Client) DeployVersion(ctx context.Context, ref ScriptRef, versionID, message string) (*Deployment, error) {
	type dv struct {
		VersionID  string `json:"version_id"`
		Percentage int    `json:"percentage"`
	}
	body := map[string]any{
		"strategy": "percentage",
		"versions": []dv{{VersionID: versionID, Percentage: 100}},
	}
	if ann := specAnnotations(map[string]string{AnnotationMessage: message}, ref, annotationsDeployment); len(ann) > 0 {
		body["annotations"] = ann
	}
	var d Deployment
	if err := c.doJSON(ctx, call{endpoint: EPPostDeployment, method: "POST", path: ref.scriptPath() + "/deployments", write: true,
		body: jsonBody(body), noResult: true}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
