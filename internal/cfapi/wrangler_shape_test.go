package cfapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// capturesDir holds real requests of wrangler 4.164.0 (see its README.md).
const capturesDir = "testdata/wrangler-captures"

// wireRequest is a multipart upload as it went over the wire: wrangler's
// from a capture, or ours from the recording transport.
type wireRequest struct {
	method, path string
	query        map[string][]string
	auth         string
	mediaType    string
	parts        []wirePart
	// members are the metadata part's member names in order, values the
	// raw value of each, bindings the raw elements of its "bindings".
	members  []string
	values   map[string]json.RawMessage
	bindings []json.RawMessage
}

// loadCapture reads the one request of a capture case matching glob: the
// request line and headers from its .req.raw file, the body from its
// .body.raw file, split with the boundary of the Content-Type header.
func loadCapture(t *testing.T, dir, glob string) wireRequest {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(capturesDir, dir, glob+".body.raw"))
	if err != nil || len(matches) != 1 {
		t.Fatalf("%s/%s: matches %v (%v)", dir, glob, matches, err)
	}
	body, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	head, err := os.ReadFile(strings.TrimSuffix(matches[0], ".body.raw") + ".req.raw")
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		t.Fatalf("%s: %v", matches[0], err)
	}
	if req.ContentLength != int64(len(body)) {
		t.Fatalf("%s: content-length %d, body %d bytes", matches[0], req.ContentLength, len(body))
	}
	return parseWire(t, req.Method, req.URL.Path, req.URL.Query(), req.Header, body)
}

// sentUpload returns our request of the given method from the recording.
func sentUpload(t *testing.T, fx fixture, method string) wireRequest {
	t.Helper()
	var found []recordedRequest
	for _, r := range fx.wire.requests() {
		if r.Method == method {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s requests sent, want 1", len(found), method)
	}
	r := found[0]
	if r.ContentLength != int64(len(r.Body)) {
		t.Errorf("content length %d for a %d-byte body: the body must not be chunked", r.ContentLength, len(r.Body))
	}
	return parseWire(t, r.Method, r.URL.Path, r.URL.Query(), r.Header, r.Body)
}

func parseWire(t *testing.T, method, path string, query map[string][]string, h http.Header, body []byte) wireRequest {
	t.Helper()
	mt, ps, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || ps["boundary"] == "" {
		t.Fatalf("content type %q: %v", h.Get("Content-Type"), err)
	}
	w := wireRequest{method: method, path: path, query: query, auth: h.Get("Authorization"), mediaType: mt,
		parts: readParts(t, body, ps["boundary"])}
	if len(w.parts) == 0 || (w.parts[0].Name != "metadata" && w.parts[0].Name != "settings") {
		t.Fatalf("first part of %v is not metadata or settings", w.parts)
	}
	w.members, w.values = objectMembers(t, []byte(w.parts[0].Data))
	if raw, ok := w.values["bindings"]; ok {
		if err := json.Unmarshal(raw, &w.bindings); err != nil {
			t.Fatalf("bindings %s: %v", raw, err)
		}
	}
	return w
}

// objectMembers returns the member names of a JSON object in order and the
// raw value of each.
func objectMembers(t *testing.T, data []byte) ([]string, map[string]json.RawMessage) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", data)
	}
	var names []string
	values := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.(string))
		values[tok.(string)] = v
	}
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	if dec.More() || dec.InputOffset() != int64(len(bytes.TrimRight(data, " \r\n"))) {
		t.Fatalf("trailing data after the object: %s", data)
	}
	return names, values
}

// uploadFrom builds our upload from what wrangler sent: the metadata's
// bindings parsed with wire.ParseBinding, its keep_bindings and
// annotations, its other members as Other, and its module parts.
func uploadFrom(t *testing.T, w wireRequest) cfapi.ScriptUpload {
	t.Helper()
	var up cfapi.ScriptUpload
	up.Metadata.Other = map[string]json.RawMessage{}
	for name, v := range w.values {
		var err error
		switch name {
		case "main_module":
			err = json.Unmarshal(v, &up.Metadata.MainModule)
		case "keep_bindings":
			err = json.Unmarshal(v, &up.Metadata.KeepBindings)
		case "annotations":
			err = json.Unmarshal(v, &up.Metadata.Annotations)
		case "bindings":
			up.Metadata.Bindings = wire.Bindings{}
			for _, raw := range w.bindings {
				b, perr := wire.ParseBinding(raw)
				if perr != nil {
					t.Fatalf("captured binding %s: %v", raw, perr)
				}
				up.Metadata.Bindings = append(up.Metadata.Bindings, b)
			}
		default:
			up.Metadata.Other[name] = v
		}
		if err != nil {
			t.Fatalf("captured %s %s: %v", name, v, err)
		}
	}
	for _, p := range w.parts[1:] {
		up.Modules = append(up.Modules, cfapi.Module{Name: p.Name, ContentType: p.Header["Content-Type"][0], Data: []byte(p.Data)})
	}
	return up
}

// TestUploadsMatchWranglerCaptures sends, through the client, the upload
// each captured wrangler request expresses, and compares our request with
// wrangler's on the wire.
func TestUploadsMatchWranglerCaptures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		dir, glob string
		ns        string
		version   bool // versions POST instead of a script PUT
	}{
		{dir: "a1-deploy-new", glob: "*-PUT-workers_scripts_my-worker"},
		{dir: "a3-deploy-new-secrets-file", glob: "*-PUT-workers_scripts_my-worker"},
		{dir: "a5-deploy-new-message-tag", glob: "*-PUT-workers_scripts_my-worker"},
		{dir: "b1-deploy-dispatch-new", glob: "*-PUT-*my-ns_scripts_my-worker", ns: "my-ns"},
		{dir: "b2-deploy-dispatch-existing", glob: "*-PUT-*my-ns_scripts_my-worker", ns: "my-ns"},
		{dir: "c1-versions-upload", glob: "*-POST-workers_scripts_my-worker_versions", version: true},
		{dir: "c3-versions-upload-message-tag", glob: "*-POST-workers_scripts_my-worker_versions", version: true},
		{dir: "a4-deploy-existing-inherit-keepvars", glob: "*-POST-workers_scripts_my-worker_versions", version: true},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			t.Parallel()
			theirs := loadCapture(t, c.dir, c.glob)
			fx := setup(t)
			ref := cfapi.ScriptRef{AccountID: account, Namespace: c.ns, Script: "my-worker"}
			if c.ns != "" {
				if err := fx.srv.CreateNamespace(account, c.ns); err != nil {
					t.Fatal(err)
				}
			}
			if c.version {
				// A version needs an existing script; a4 inherits API_KEY.
				prev := cfapitest.Script{Bindings: []wire.Binding{wire.MustParseBinding(`{"type":"secret_text","name":"API_KEY","text":"old"}`)}}
				if err := fx.srv.PutScript(account, c.ns, ref.Script, prev); err != nil {
					t.Fatal(err)
				}
			}
			up := uploadFrom(t, theirs)
			var err error
			if c.version {
				_, err = fx.client.CreateVersion(context.Background(), ref, up)
			} else {
				_, err = fx.client.UploadScript(context.Background(), ref, up)
			}
			if err != nil {
				t.Fatalf("the emulator refused our upload: %v", err)
			}
			ours := sentUpload(t, fx, theirs.method)
			compareUploads(t, theirs, ours)
		})
	}
}

func compareUploads(t *testing.T, theirs, ours wireRequest) {
	t.Helper()
	if ours.path != theirs.path {
		t.Errorf("path %s, wrangler %s", ours.path, theirs.path)
	}
	// bindings_inherit=strict on both, excludeScript=true on PUTs.
	if diff := cmp.Diff(theirs.query, ours.query); diff != "" {
		t.Errorf("query (-wrangler +ours):\n%s", diff)
	}
	if theirs.auth != "Bearer <token>" || ours.auth != "Bearer "+testToken {
		t.Errorf("Authorization %q, wrangler %q", ours.auth, theirs.auth)
	}
	if ours.mediaType != "multipart/form-data" || theirs.mediaType != ours.mediaType {
		t.Errorf("media type %s, wrangler %s", ours.mediaType, theirs.mediaType)
	}

	// Parts: names and order, filenames, and every part header
	// (Content-Disposition verbatim; no Content-Type on metadata).
	type partShape struct {
		Name, FileName string
		Header         map[string][]string
	}
	shapes := func(ps []wirePart) []partShape {
		var out []partShape
		for _, p := range ps {
			out = append(out, partShape{p.Name, p.FileName, p.Header})
		}
		return out
	}
	if diff := cmp.Diff(shapes(theirs.parts), shapes(ours.parts)); diff != "" {
		t.Errorf("parts (-wrangler +ours):\n%s", diff)
	}
	if len(theirs.parts) == len(ours.parts) {
		for i := 1; i < len(ours.parts); i++ {
			if ours.parts[i].Data != theirs.parts[i].Data {
				t.Errorf("module %s differs from wrangler's", ours.parts[i].Name)
			}
		}
	}
	if h := ours.parts[0].Header; len(h["Content-Type"]) != 0 || ours.parts[0].FileName != "" {
		t.Errorf("metadata part has headers %v, want only Content-Disposition", h)
	}

	// Metadata members. wrangler's versions upload sends "annotations":{}
	// when there are none; our client leaves empty annotations out.
	theirMembers := slices.Clone(theirs.members)
	if string(theirs.values["annotations"]) == "{}" {
		theirMembers = slices.DeleteFunc(theirMembers, func(m string) bool { return m == "annotations" })
	}
	if diff := cmp.Diff(sorted(theirMembers), sorted(ours.members)); diff != "" {
		t.Errorf("metadata members (-wrangler +ours):\n%s", diff)
	}
	// main_module and bindings lead; keep_bindings and annotations close.
	// (The members between them are sorted in ours, in config order in
	// wrangler's; JSON member order carries no meaning there.)
	framing := func(ms []string) []string {
		return slices.DeleteFunc(slices.Clone(ms), func(m string) bool {
			return !slices.Contains([]string{"main_module", "bindings", "keep_bindings", "annotations"}, m)
		})
	}
	if diff := cmp.Diff(framing(theirMembers), framing(ours.members)); diff != "" {
		t.Errorf("order of main_module, bindings, keep_bindings, annotations (-wrangler +ours):\n%s", diff)
	}
	if len(ours.members) < 2 || ours.members[0] != "main_module" || ours.members[1] != "bindings" {
		t.Errorf("metadata starts with %v", ours.members)
	}
	last := ours.members[len(ours.members)-1]
	if last != "keep_bindings" && last != "annotations" {
		t.Errorf("metadata ends with %q", last)
	}
	for _, m := range ours.members {
		if m != "bindings" && !jsonEqual(t, theirs.values[m], ours.values[m]) {
			t.Errorf("member %s = %s, wrangler %s", m, ours.values[m], theirs.values[m])
		}
	}

	// Every binding, whatever its type, goes out byte for byte as wrangler
	// wrote it, in the same order.
	if len(ours.bindings) != len(theirs.bindings) {
		t.Fatalf("%d bindings, wrangler %d", len(ours.bindings), len(theirs.bindings))
	}
	for i := range ours.bindings {
		if !bytes.Equal(ours.bindings[i], theirs.bindings[i]) {
			t.Errorf("binding %d:\n ours     %s\n wrangler %s", i, ours.bindings[i], theirs.bindings[i])
		}
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestSettingsPatchShape: wrangler never sends a settings PATCH (see the
// captures' README), so our request is checked against the API reference:
// one part named "settings" (no filename) with Content-Type
// application/json holding {"bindings":[...], other members}.
func TestSettingsPatchShape(t *testing.T) {
	t.Parallel()
	eachFlavour(t, func(t *testing.T, fx fixture, ref cfapi.ScriptRef) {
		kv := wire.MustParseBinding(`{"name":"KV","type":"kv_namespace","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`)
		cfg := wire.MustParseBinding(`{"name":"CONFIG","type":"json","json":{"debug":true,"level":3}}`)
		patch := cfapi.SettingsPatch{
			Bindings: wire.Bindings{wire.Ref(wire.TypeSecretText, "API_TOKEN"), kv, cfg},
			Other:    map[string]json.RawMessage{"logpush": json.RawMessage(`true`), "compatibility_date": json.RawMessage(`"2025-06-01"`)},
		}
		if _, err := fx.client.PatchSettings(context.Background(), ref, patch); err != nil {
			t.Fatal(err)
		}
		ours := sentUpload(t, fx, http.MethodPatch)
		if !strings.HasSuffix(ours.path, ref.Script+"/settings") || len(ours.query) != 0 {
			t.Errorf("PATCH %s?%v", ours.path, ours.query)
		}
		if ours.auth != "Bearer "+testToken || ours.mediaType != "multipart/form-data" {
			t.Errorf("Authorization %q, media type %q", ours.auth, ours.mediaType)
		}
		want := []wirePart{{
			Name: "settings",
			Header: map[string][]string{
				"Content-Disposition": {`form-data; name="settings"`},
				"Content-Type":        {"application/json"},
			},
			Data: `{"bindings":[{"type":"secret_text","name":"API_TOKEN"},` + string(kv.Raw()) + `,` + string(cfg.Raw()) +
				`],"compatibility_date":"2025-06-01","logpush":true}`,
		}}
		if diff := cmp.Diff(want, ours.parts); diff != "" {
			t.Errorf("parts (-want +ours):\n%s", diff)
		}
		if got := fx.stats(t).Requests[cfapitest.EndpointPatchSettings][200]; got != 1 {
			t.Errorf("the emulator accepted %d patches", got)
		}
	})
}
