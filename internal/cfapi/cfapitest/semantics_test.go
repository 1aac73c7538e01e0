package cfapitest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

func mb(s string) wire.Binding { return wire.MustParseBinding(s) }

// raws renders bindings as their JSON objects, for cmp.Diff.
func raws(bs []wire.Binding) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b.Raw())
	}
	return out
}

// wantCode asserts that err is an *Error with the status and code.
func wantCode(t *testing.T, err error, status, code int) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want *Error with code %d", err, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error = %v, want HTTP %d code %d", e, status, code)
	}
	return e
}

var (
	secretA  = `{"type":"secret_text","name":"A","text":"s3cr3t-A"}`
	plainB   = `{"type":"plain_text","name":"B","text":"hello"}`
	kvC      = `{"type":"kv_namespace","name":"C","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`
	wasmW    = `{"type":"wasm_module","name":"W","part":"mod.wasm"}`
	jsonJ    = `{"type":"json","name":"J","json":{"debug":true}}`
	secKeyK  = `{"type":"secret_key","name":"K","algorithm":{"name":"HMAC","hash":"SHA-256"},"format":"raw","usages":["sign"],"key_base64":"c2VjcmV0LWtleQ=="}`
	unknownU = `{"type":"stream","name":"U","future":{"a":1}}`
)

func TestApplySettingsPatch(t *testing.T) {
	current := []wire.Binding{mb(secretA), mb(plainB), mb(kvC), mb(wasmW)}
	tests := []struct {
		name     string
		patch    []string
		want     []string
		wantCode int
		noLeak   string // must not appear in the error message
	}{
		{
			name:  "refs keep current values including secrets",
			patch: []string{`{"type":"secret_text","name":"A"}`, `{"name":"W","type":"wasm_module"}`},
			want:  []string{secretA, wasmW},
		},
		{
			name:  "patch is the full set: unlisted bindings go",
			patch: []string{`{"type":"plain_text","name":"B","text":"changed"}`},
			want:  []string{`{"type":"plain_text","name":"B","text":"changed"}`},
		},
		{
			name:  "new secret and unknown type are accepted",
			patch: []string{`{"type":"secret_text","name":"N","text":"new"}`, unknownU, `{"type":"kv_namespace","name":"C"}`},
			want:  []string{`{"type":"secret_text","name":"N","text":"new"}`, unknownU, kvC},
		},
		{name: "empty patch removes everything", patch: []string{}, want: []string{}},
		{
			name:     "ref to a missing binding",
			patch:    []string{`{"type":"secret_text","name":"NOPE"}`},
			wantCode: CodeValidation,
		},
		{
			name:     "ref with the wrong type",
			patch:    []string{`{"type":"plain_text","name":"A"}`},
			wantCode: CodeValidation,
		},
		{
			name:     "secret without text",
			patch:    []string{`{"type":"secret_text","name":"A","text":null}`},
			wantCode: CodeValidation,
		},
		{
			name:     "secret with a non-string text does not leak",
			patch:    []string{`{"type":"secret_text","name":"A","text":{"v":"leaky-value"}}`},
			wantCode: CodeValidation,
			noLeak:   "leaky-value",
		},
		{
			name:     "oversized secret",
			patch:    []string{`{"type":"secret_text","name":"A","text":"` + strings.Repeat("x", wire.MaxValueBytes+1) + `"}`},
			wantCode: CodeValueTooLarge,
			noLeak:   "xxxx",
		},
		{
			name:     "duplicate names",
			patch:    []string{`{"type":"secret_text","name":"A"}`, `{"type":"plain_text","name":"A","text":"x"}`},
			wantCode: CodeValidation,
		},
		{
			name:     "part types cannot be added",
			patch:    []string{`{"type":"wasm_module","name":"W2","part":"mod.wasm"}`},
			wantCode: CodeValidation,
		},
		{
			name:  "inherit carries a binding over, renamed",
			patch: []string{`{"type":"inherit","name":"A2","old_name":"A"}`, `{"type":"inherit","name":"B","version_id":"latest"}`},
			want:  []string{strings.Replace(secretA, `"name":"A"`, `"name":"A2"`, 1), plainB},
		},
		{
			name:     "unresolvable inherit",
			patch:    []string{`{"type":"inherit","name":"NONE"}`},
			wantCode: CodeInvalidInherit,
		},
		{
			name:     "inherit from another version",
			patch:    []string{`{"type":"inherit","name":"A","version_id":"0b7e9f0c-0000-4000-8000-000000000000"}`},
			wantCode: CodeInvalidInherit,
		},
		{
			name:     "part binding of a part the script lacks",
			patch:    []string{`{"type":"wasm_module","name":"W2","part":"other.wasm"}`},
			wantCode: CodeValidation,
		},
		{
			name:     "empty name",
			patch:    []string{`{"type":"plain_text","name":"","text":"x"}`},
			wantCode: CodeBindingNoName,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			patch := make([]wire.Binding, len(tc.patch))
			for i, s := range tc.patch {
				patch[i] = mb(s)
			}
			got, err := ApplySettingsPatch(current, patch)
			if tc.wantCode != 0 {
				e := wantCode(t, err, 400, tc.wantCode)
				if tc.noLeak != "" && strings.Contains(e.Error(), tc.noLeak) {
					t.Errorf("error leaks the value: %v", e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, raws(got)); diff != "" {
				t.Errorf("bindings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplySettingsPatchRules: a part binding naming a module of the
// script is accepted, and RefuseTypeName refuses a {type, name} entry of a
// valued type naming it, while a fieldless type stays accepted.
func TestApplySettingsPatchRules(t *testing.T) {
	current := []wire.Binding{mb(secretA), mb(kvC)}
	got, err := ApplySettingsPatchRules(current, []wire.Binding{mb(`{"type":"wasm_module","name":"W2","part":"m.wasm"}`)},
		SettingsPatchRules{Parts: []string{"index.js", "m.wasm"}})
	if err != nil || len(got) != 1 || got[0].Name() != "W2" {
		t.Fatalf("part binding: %v %v", raws(got), err)
	}
	rules := SettingsPatchRules{RefuseTypeName: true}
	for _, ref := range []wire.Binding{wire.Ref("secret_text", "A"), wire.Ref("kv_namespace", "C"), wire.Ref("wasm_module", "W")} {
		_, err := ApplySettingsPatchRules(current, []wire.Binding{ref}, rules)
		e := wantCode(t, err, 400, CodeValidation)
		if !strings.Contains(e.Message, "'"+ref.Name()+"'") {
			t.Errorf("%s: message %q does not name the binding", ref.Name(), e.Message)
		}
	}
	if got, err := ApplySettingsPatchRules(nil, []wire.Binding{wire.Ref("ai", "AI")}, rules); err != nil || len(got) != 1 {
		t.Errorf("fieldless ref under RefuseTypeName: %v %v", raws(got), err)
	}
}

func TestApplySettingsPatchSecretWithoutTextMessage(t *testing.T) {
	_, err := ApplySettingsPatch(nil, []wire.Binding{mb(`{"type":"secret_text","name":"API_KEY","text":""}`)})
	if err != nil {
		t.Fatalf("empty text is a value: %v", err)
	}
	_, err = ApplySettingsPatch(nil, []wire.Binding{mb(`{"type":"secret_text","name":"API_KEY","text":null}`)})
	e := wantCode(t, err, 400, CodeValidation)
	if e.Message != "invalid or missing text property for binding API_KEY" {
		t.Errorf("message = %q", e.Message)
	}
}

func TestApplyUpload(t *testing.T) {
	previous := []wire.Binding{mb(secretA), mb(plainB), mb(kvC), mb(jsonJ), mb(secKeyK)}
	tests := []struct {
		name     string
		explicit []string
		keep     []string
		strict   bool
		parts    []string
		want     []string
		wantCode int
		wantN    int // number of error entries
	}{
		{
			name:     "upload replaces the whole set",
			explicit: []string{`{"type":"plain_text","name":"B","text":"new"}`},
			want:     []string{`{"type":"plain_text","name":"B","text":"new"}`},
		},
		{
			name:     "keep_bindings carries listed types not named explicitly",
			explicit: []string{`{"type":"secret_text","name":"A","text":"rotated"}`},
			keep:     []string{"secret_text", "secret_key"},
			want:     []string{`{"type":"secret_text","name":"A","text":"rotated"}`, secKeyK},
		},
		{
			name:     "keep_bindings with plain_text and json (wrangler --keep-vars)",
			explicit: nil,
			keep:     []string{"plain_text", "json", "secret_text", "secret_key"},
			want:     []string{secretA, plainB, jsonJ, secKeyK},
		},
		{
			name:     "unknown keep types are ignored",
			explicit: []string{kvC},
			keep:     []string{"no_such_type"},
			want:     []string{kvC},
		},
		{
			name:     "inherit by name keeps the secret value",
			explicit: []string{`{"type":"inherit","name":"A"}`},
			strict:   true,
			want:     []string{secretA},
		},
		{
			name:     "inherit with old_name renames",
			explicit: []string{`{"type":"inherit","name":"RENAMED","old_name":"A"}`},
			strict:   true,
			want:     []string{`{"type":"secret_text","name":"RENAMED","text":"s3cr3t-A"}`},
		},
		{
			name:     "inherit with version_id latest",
			explicit: []string{`{"type":"inherit","name":"C","version_id":"latest"}`},
			strict:   true,
			want:     []string{kvC},
		},
		{
			name:     "unresolvable inherit without strict is dropped",
			explicit: []string{`{"type":"inherit","name":"MISSING"}`, plainB},
			want:     []string{plainB},
		},
		{
			name:     "unresolvable inherit with strict is 10057, one entry each",
			explicit: []string{`{"type":"inherit","name":"MISSING"}`, `{"type":"inherit","name":"GONE"}`, plainB},
			strict:   true,
			wantCode: CodeInvalidInherit,
			wantN:    2,
		},
		{
			name:     "secret without text",
			explicit: []string{`{"type":"secret_text","name":"A"}`},
			keep:     []string{"secret_text"},
			wantCode: CodeValidation,
		},
		{
			name:     "secret_key without key material",
			explicit: []string{`{"type":"secret_key","name":"K","algorithm":{"name":"HMAC"},"format":"raw","usages":["sign"]}`},
			wantCode: CodeValidation,
		},
		{
			name:     "part binding with its part",
			explicit: []string{wasmW},
			parts:    []string{"index.js", "mod.wasm"},
			want:     []string{wasmW},
		},
		{
			name:     "part binding without its part",
			explicit: []string{wasmW},
			parts:    []string{"index.js"},
			wantCode: CodeValidation,
		},
		{
			name:     "duplicate names",
			explicit: []string{plainB, `{"type":"inherit","name":"B"}`},
			wantCode: CodeValidation,
		},
		{
			name:     "unknown types pass through",
			explicit: []string{unknownU},
			want:     []string{unknownU},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			explicit := make([]wire.Binding, len(tc.explicit))
			for i, s := range tc.explicit {
				explicit[i] = mb(s)
			}
			got, err := ApplyUpload(previous, explicit, tc.keep, tc.strict, tc.parts)
			if tc.wantCode != 0 {
				e := wantCode(t, err, 400, tc.wantCode)
				if tc.wantN > 0 && len(e.entries()) != tc.wantN {
					t.Errorf("got %d error entries, want %d: %v", len(e.entries()), tc.wantN, e)
				}
				if strings.Contains(e.Error(), "s3cr3t") {
					t.Errorf("error leaks a secret: %v", e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, raws(got)); diff != "" {
				t.Errorf("bindings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyUploadInheritFromNamedVersion(t *testing.T) {
	v1 := []wire.Binding{mb(`{"type":"plain_text","name":"B","text":"v1"}`)}
	latest := []wire.Binding{mb(plainB)}
	lookup := func(id string) ([]wire.Binding, bool) {
		switch id {
		case "", "latest":
			return latest, true
		case "v1":
			return v1, true
		}
		return nil, false
	}
	got, err := applyUpload(lookup, []wire.Binding{mb(`{"type":"inherit","name":"B","version_id":"v1"}`)}, nil, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(raws(v1), raws(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, err = ApplyUpload(latest, []wire.Binding{mb(`{"type":"inherit","name":"B","version_id":"v1"}`)}, nil, true, nil)
	wantCode(t, err, 400, CodeInvalidInherit)
}

func TestRenderForGet(t *testing.T) {
	stored := []wire.Binding{
		mb(secretA), mb(plainB), mb(kvC), mb(jsonJ), mb(secKeyK), mb(unknownU),
		mb(`{"type":"service","name":"AUTH","service":"auth-worker"}`),
		mb(`{"type":"service","name":"STAGING","service":"auth-worker","environment":"staging"}`),
		mb(`{"type":"durable_object_namespace","name":"COUNTER","class_name":"Counter"}`),
		mb(`{"type":"durable_object_namespace","name":"OTHER","class_name":"Counter","script_name":"other"}`),
		mb(`{"type":"ai_search","name":"SEARCH","instance_name":"docs"}`),
		mb(`{"type":"d1","name":"DB","id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb29"}`),
		mb(`{"type":"inherit","name":"STALE"}`),
	}
	got := RenderForGet(DefaultAccount, "my-worker", stored)
	byName := map[string]map[string]any{}
	for _, b := range got {
		var m map[string]any
		if err := json.Unmarshal(b.Raw(), &m); err != nil {
			t.Fatal(err)
		}
		byName[b.Name()] = m
	}
	if _, ok := byName["STALE"]; ok {
		t.Error("inherit binding rendered")
	}
	if len(got) != len(stored)-1 {
		t.Errorf("got %d bindings, want %d", len(got), len(stored)-1)
	}
	if _, ok := byName["A"]["text"]; ok {
		t.Error("secret_text text rendered")
	}
	if _, ok := byName["K"]["key_base64"]; ok {
		t.Error("secret_key key_base64 rendered")
	}
	if byName["K"]["format"] != "raw" {
		t.Errorf("secret_key lost its format: %v", byName["K"])
	}
	if diff := cmp.Diff(map[string]any{"debug": true}, byName["J"]["json"]); diff != "" {
		t.Errorf("json value (-want +got):\n%s", diff)
	}
	if byName["AUTH"]["environment"] != "production" || byName["STAGING"]["environment"] != "staging" {
		t.Errorf("service environments: %v %v", byName["AUTH"], byName["STAGING"])
	}
	if byName["SEARCH"]["namespace"] != "default" {
		t.Errorf("ai_search: %v", byName["SEARCH"])
	}
	if byName["DB"]["database_id"] != "4e1c28a9-90e4-41da-8b4b-6cf36e5abb29" || byName["DB"]["id"] != nil {
		t.Errorf("d1: %v", byName["DB"])
	}
	c, o := byName["COUNTER"]["namespace_id"], byName["OTHER"]["namespace_id"]
	if id, _ := c.(string); len(id) != 32 || c == o {
		t.Errorf("durable object ids %v %v", c, o)
	}
	if diff := cmp.Diff(unknownU, string(mustFind(t, got, "U").Raw())); diff != "" {
		t.Errorf("unknown type changed (-want +got):\n%s", diff)
	}
	// Deterministic, and not the stored order.
	again := RenderForGet(DefaultAccount, "my-worker", stored)
	if diff := cmp.Diff(raws(got), raws(again)); diff != "" {
		t.Errorf("render is not deterministic:\n%s", diff)
	}
	var storedNames []string
	for _, b := range stored[:len(stored)-1] {
		storedNames = append(storedNames, b.Name())
	}
	if cmp.Equal(storedNames, wire.Bindings(got).Names()) {
		t.Error("render kept upload order")
	}
	// The rendered form matches what was uploaded, as cfapi defines it.
	for _, b := range stored[:len(stored)-1] {
		if !b.Matches(mustFind(t, got, b.Name())) {
			t.Errorf("%s: stored %s does not match rendered %s", b.Name(), b.Raw(), mustFind(t, got, b.Name()).Raw())
		}
	}
	// Stored bindings keep their secrets.
	if s, _ := stored[0].String("text"); s != "s3cr3t-A" {
		t.Error("RenderForGet modified its input")
	}
}

func mustFind(t *testing.T, bs []wire.Binding, name string) wire.Binding {
	t.Helper()
	b, ok := wire.Bindings(bs).ByName(name)
	if !ok {
		t.Fatalf("no binding %s", name)
	}
	return b
}

// A {type, name} entry for a name that does not exist adds the binding
// when the type has no fields (ai, browser, ...), and is refused when the
// type needs a value.
func TestApplySettingsPatchFieldlessRefAdds(t *testing.T) {
	got, err := ApplySettingsPatch(nil, []wire.Binding{wire.Ref("ai", "AI"), wire.Ref("version_metadata", "VM")})
	if err != nil || len(got) != 2 || got[0].Name() != "AI" {
		t.Fatalf("fieldless refs: %v, %v", got, err)
	}
	if _, err := ApplySettingsPatch(nil, []wire.Binding{wire.Ref("kv_namespace", "KV")}); err == nil {
		t.Fatal("a kv_namespace without namespace_id and nothing to keep was accepted")
	}
}
