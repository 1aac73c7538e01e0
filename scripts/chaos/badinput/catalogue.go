// Package badinput is the catalogue of malformed and borderline events of
// the chaos suite ("Bad input"): each case is a subject and a raw
// body, with what docs/events.md (and the README's copy of it) says must happen
// to it. Some cases take more than one event: they arrange what the API
// answers about their script (Case.Arrange, against the emulator), hold
// more bindings at the start, and take further steps (later events, the
// tenant's changes by hand, a dead-letter replay), which the runner takes
// in lockstep across the cases. The jobs tests run it against an embedded server on every
// `go test ./...`; the chaos suite runs it against the real binary and a
// separate nats-server with the default 1 MiB max_payload.
//
// The package has no dependency on the pipeline (only on cfapi and the
// emulator), so that the pipeline's own tests can import it.
package badinput

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Namespace is the dispatch namespace every case targets.
const Namespace = "customers"

// Secret is a value that some cases carry in a secret binding, or where a
// secret might be put by mistake; it must never appear in a dead letter.
const Secret = "sk_live_CHAOS_DO_NOT_LEAK_4f1d"

// ForbiddenAccount is an account outside the token's scope: whoever runs
// the catalogue makes the API refuse it (403, code 10000) while the token
// still verifies (cfapitest's DenyAccount).
const ForbiddenAccount = "0123456789abcdef0123456789abcdef"

// Dead-letter reasons (event.Reason values, README "Dead-letter record").
const (
	InvalidJSON     = "invalid_json"
	TooLarge        = "too_large"
	TooDeep         = "too_deep"
	Schema          = "unsupported_schema"
	MissingField    = "missing_field"
	InvalidField    = "invalid_field"
	InvalidBinding  = "invalid_binding"
	SubjectMismatch = "subject_mismatch"
	Forbidden       = "forbidden_account"
	APIRejected     = "api_rejected"
	InvalidDesired  = "invalid_desired_state"
)

// Follow-up events of the redelivery case: more than the reconciler ever
// remembered of recent event ids, so that only a stamp that is the same on
// every delivery tells the redelivered event is old.
const redeliveryFollowers = 40

// Case is one event of the catalogue.
type Case struct {
	Name string
	// Namespace and Script name the script the case is about (its own,
	// so outcomes do not mix); the emulator must hold it. Namespace is ""
	// for an ordinary Worker.
	Namespace, Script string
	// Subject is where the body is published, and Body what is published.
	Subject string
	Body    []byte
	// MsgID is the Nats-Msg-Id header (unique per case).
	MsgID string

	// Reason, when set, is the dead-letter reason the event must get.
	Reason string
	// AtReconcile says the event is valid and its Reason comes from the
	// reconcile (what the API answers), not from decoding it.
	AtReconcile bool
	// ErrorMentions are substrings the dead letter's error must contain
	// (the field it names).
	ErrorMentions []string
	// Accepted cases are valid events: Check verifies the script's live
	// bindings afterwards (by name, as raw JSON).
	Accepted bool
	Check    func(live map[string]json.RawMessage) error
	// Live are bindings (raw JSON) the script holds at the start, beside
	// the secret and the unowned binding every case script is seeded with.
	Live []string
	// API is what the API does about the script, arranged before the
	// first event is published.
	API API
	// Then are the steps taken after Body, in order: every case's first
	// step once every event published before it has settled, and so on
	// (the runner goes through the steps of all cases in lockstep).
	// Reason, Accepted and Check are about the end, after the last step.
	Then []Step
	// RefusedAbove, when positive, is the body size beyond which NATS
	// itself refuses the publish (max_payload): on a server whose
	// max_payload is below it, the publish must fail and nothing is
	// stored.
	RefusedAbove int

	ordinary bool
}

// API is what the API does about one case's script (see Arrange).
type API struct {
	// FailFirstReconcile makes every attempt of the first settings read
	// of the script fail with 503 (code 10013): the first reconcile of
	// the case's event fails and the event is delivered again later.
	FailFirstReconcile bool
	// PageReads and PageWrites make the first n settings reads, or writes,
	// of the script answer 200 with an HTML page (a proxy's or a challenge
	// page) instead of the API's JSON envelope.
	PageReads, PageWrites int
	// RefuseRemoval names a binding whose removal the API refuses (400,
	// code 10021, as for a binding something still uses).
	RefuseRemoval string
}

// Step is one step of a case after its first event: the tenant's changes
// by hand, then a replay of the case's dead letters, then events, in that
// order.
type Step struct {
	// Tenant are bindings (raw JSON) the tenant puts on the live script
	// by hand (SetByHand), replacing those of the same names.
	Tenant []string
	// Replay replays every dead letter of the case's subject (`reconciler
	// dlq replay`, which deletes the dead letter once the replay is
	// stored); the runner fails the case when there is none to replay.
	Replay bool
	// Events are bodies published on the case's subject in order, each
	// with the Nats-Msg-Id of Case.StepMsgID.
	Events [][]byte
	// Early takes the step as soon as the API has answered the first
	// reconcile's failed reads (API.FailFirstReconcile), before the event
	// before it settled: it is redelivered after the step's events.
	Early bool
}

// Staged reports whether the case is more than one event on a plain
// script: it holds more bindings, arranges the API or has further steps.
func (c Case) Staged() bool {
	return len(c.Live) > 0 || c.API != (API{}) || len(c.Then) > 0
}

// Good returns a valid event for script, published after the catalogue:
// it must apply (no other event is delayed by the bad ones).
func Good(account, script, id string) (subject string, body []byte) {
	ev := map[string]any{"schema": "bindings.change/v1", "id": id, "account_id": account, "dispatch_namespace": Namespace,
		"script": script, "generation": 1, "op": "patch",
		"upsert": []any{map[string]any{"type": "plain_text", "name": "AFTER_BAD_INPUT", "text": "applied"}}}
	data, _ := json.Marshal(ev)
	return "bindings." + account + "." + Namespace + "." + script, data
}

// Cases returns the catalogue for account (the emulator's account).
func Cases(account string) []Case {
	var cases []Case
	n := 0
	add := func(c Case) {
		n++
		c.Script = fmt.Sprintf("bad-%02d", n)
		if !c.ordinary {
			c.Namespace = Namespace
		}
		if c.Subject == "" {
			c.Subject = "bindings." + account + "." + Namespace + "." + c.Script
		}
		c.MsgID = fmt.Sprintf("badinput-%02d", n)
		cases = append(cases, c)
	}
	// ev returns a valid patch event of the next case's script as a map,
	// changed by edit, then encoded.
	ev := func(edit func(m map[string]any)) []byte {
		m := map[string]any{"schema": "bindings.change/v1", "id": fmt.Sprintf("bad-ev-%02d", n+1), "account_id": account,
			"dispatch_namespace": Namespace, "script": fmt.Sprintf("bad-%02d", n+1), "generation": 1, "op": "patch",
			"upsert": []any{map[string]any{"type": "plain_text", "name": "A", "text": "1"}}}
		if edit != nil {
			edit(m)
		}
		data, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		return data
	}
	// raw returns a body with the next case's identifiers filled in: {A}
	// account, {S} script, {I} id.
	raw := func(tmpl string) []byte {
		return []byte(strings.NewReplacer("{A}", account, "{S}", fmt.Sprintf("bad-%02d", n+1), "{I}", fmt.Sprintf("bad-ev-%02d", n+1)).Replace(tmpl))
	}
	secretUpsert := func(m map[string]any) {
		m["upsert"] = []any{map[string]any{"type": "secret_text", "name": "STRIPE_KEY", "text": Secret}}
	}
	has := func(name string, want func(json.RawMessage) bool) func(map[string]json.RawMessage) error {
		return func(live map[string]json.RawMessage) error {
			b, ok := live[name]
			if !ok {
				return fmt.Errorf("binding %s is missing", name)
			}
			if want != nil && !want(b) {
				return fmt.Errorf("binding %s = %s", name, b)
			}
			return nil
		}
	}
	textIs := func(want string) func(json.RawMessage) bool {
		return func(b json.RawMessage) bool {
			var v struct{ Text string }
			return json.Unmarshal(b, &v) == nil && v.Text == want
		}
	}

	// --- Not JSON, or not one JSON object -------------------------------
	add(Case{Name: "broken JSON (truncated) holding a secret", Reason: InvalidJSON,
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","upsert":[{"type":"secret_text","name":"S","text":"` + Secret + `"`)})
	add(Case{Name: "not an object (array)", Reason: InvalidJSON, Body: []byte(`[{"schema":"bindings.change/v1"}]`)})
	add(Case{Name: "JSON null", Reason: InvalidJSON, Body: []byte(`null`)})
	add(Case{Name: "empty body", Reason: InvalidJSON, Body: []byte(``)})
	add(Case{Name: "two objects in one body", Reason: InvalidJSON,
		Body: append(ev(nil), ev(nil)...)})
	add(Case{Name: "trailing garbage after the object", Reason: InvalidJSON,
		Body: append(ev(nil), []byte(` garbage`)...)})
	add(Case{Name: "nesting 20,000 deep in a json binding", Reason: TooDeep, ErrorMentions: []string{"64 levels"},
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","upsert":[{"type":"json","name":"J","json":` +
			strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}]}`)})
	add(Case{Name: "1 MiB nested as deep as it goes", Reason: TooDeep, ErrorMentions: []string{"64 levels"},
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","remove":["A"],"x":` +
			strings.Repeat("[", (1<<20-2048)/2) + strings.Repeat("]", (1<<20-2048)/2) + `}`)})
	add(Case{Name: "1 MiB of values 65 levels deep (wide and deep), beside a secret", Reason: TooDeep, ErrorMentions: []string{"64 levels"},
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","upsert":[{"type":"secret_text","name":"S","text":"` + Secret + `"}],"x":[` +
			strings.TrimSuffix(strings.Repeat(strings.Repeat("[", 64)+strings.Repeat("]", 64)+",", (1<<20-4096)/129), ",") + `]}`)})
	add(Case{Name: "invalid UTF-8 in a secret value", Reason: InvalidJSON, ErrorMentions: []string{"UTF-8"},
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","upsert":[{"type":"secret_text","name":"S","text":"` + Secret + "\xff\xfe" + `"}]}`)})
	add(Case{Name: "invalid UTF-8 in the script name", Reason: InvalidJSON, ErrorMentions: []string{"UTF-8"},
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}` + "\xc3\x28" + `","op":"patch","remove":["A"]}`)})

	// --- Schema and required fields -------------------------------------
	add(Case{Name: "unknown schema version", Reason: Schema, ErrorMentions: []string{"bindings.change/v9"},
		Body: ev(func(m map[string]any) { m["schema"] = "bindings.change/v9"; secretUpsert(m) })})
	add(Case{Name: "schema missing", Reason: MissingField, ErrorMentions: []string{"schema"},
		Body: ev(func(m map[string]any) { delete(m, "schema") })})
	add(Case{Name: "id missing", Reason: MissingField, ErrorMentions: []string{"id"},
		Body: ev(func(m map[string]any) { delete(m, "id"); secretUpsert(m) })})
	add(Case{Name: "account_id missing", Reason: MissingField, ErrorMentions: []string{"account_id"},
		Body: ev(func(m map[string]any) { delete(m, "account_id") })})
	add(Case{Name: "script missing", Reason: MissingField, ErrorMentions: []string{"script"},
		Body: ev(func(m map[string]any) { delete(m, "script") })})
	add(Case{Name: "op missing", Reason: MissingField, ErrorMentions: []string{"op"},
		Body: ev(func(m map[string]any) { delete(m, "op") })})
	add(Case{Name: "replace without bindings", Reason: MissingField, ErrorMentions: []string{"bindings"},
		Body: ev(func(m map[string]any) { m["op"] = "replace"; delete(m, "upsert") })})
	add(Case{Name: "patch with neither upsert nor remove", Reason: MissingField, ErrorMentions: []string{"upsert"},
		Body: ev(func(m map[string]any) { delete(m, "upsert") })})

	// --- Wrong types and values -----------------------------------------
	add(Case{Name: "schema is a number", Reason: InvalidField, ErrorMentions: []string{"schema"},
		Body: ev(func(m map[string]any) { m["schema"] = 1 })})
	add(Case{Name: "generation is a string", Reason: InvalidField, ErrorMentions: []string{"generation"},
		Body: ev(func(m map[string]any) { m["generation"] = "seven"; secretUpsert(m) })})
	add(Case{Name: "generation is negative", Reason: InvalidField, ErrorMentions: []string{"generation"},
		Body: ev(func(m map[string]any) { m["generation"] = -1 })})
	add(Case{Name: "generation is a fraction", Reason: InvalidField, ErrorMentions: []string{"generation"},
		Body: ev(func(m map[string]any) { m["generation"] = 1.5 })})
	add(Case{Name: "generation is 2^64 (overflows)", Reason: InvalidField, ErrorMentions: []string{"generation"},
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","generation":18446744073709551616,"op":"patch","remove":["A"]}`)})
	add(Case{Name: "upsert is an object, not an array", Reason: InvalidField, ErrorMentions: []string{"upsert"},
		Body: ev(func(m map[string]any) {
			m["upsert"] = map[string]any{"S": map[string]any{"type": "secret_text", "name": "S", "text": Secret}}
		})})
	add(Case{Name: "remove holds a number", Reason: InvalidField, ErrorMentions: []string{"remove"},
		Body: ev(func(m map[string]any) { m["remove"] = []any{1} })})
	add(Case{Name: "unknown op", Reason: InvalidField, ErrorMentions: []string{"op"},
		Body: ev(func(m map[string]any) { m["op"] = "merge" })})
	add(Case{Name: "replace carrying upsert", Reason: InvalidField, ErrorMentions: []string{"upsert"},
		Body: ev(func(m map[string]any) { m["op"] = "replace"; m["bindings"] = []any{} })})
	add(Case{Name: "unknown strategy", Reason: InvalidField, ErrorMentions: []string{"strategy"},
		Body: ev(func(m map[string]any) { m["strategy"] = "fast" })})
	add(Case{Name: "occurred_at not RFC 3339", Reason: InvalidField, ErrorMentions: []string{"occurred_at"},
		Body: ev(func(m map[string]any) { m["occurred_at"] = "yesterday" })})
	add(Case{Name: "account_id in upper case", Reason: InvalidField, ErrorMentions: []string{"account_id"},
		Body: ev(func(m map[string]any) { m["account_id"] = strings.ToUpper(account) })})
	add(Case{Name: "id of 300 bytes", Reason: InvalidField, ErrorMentions: []string{"id"},
		Body: ev(func(m map[string]any) { m["id"] = strings.Repeat("i", 300) })})

	// --- Names: control characters, dots, wildcards ----------------------
	add(Case{Name: "control character in the script name", Reason: InvalidField, ErrorMentions: []string{"script"},
		Body: ev(func(m map[string]any) { m["script"] = m["script"].(string) + "\x00\x07" })})
	add(Case{Name: "dot in the script name", Reason: InvalidField, ErrorMentions: []string{"script"},
		Body: ev(func(m map[string]any) { m["script"] = "tenant.evil" })})
	add(Case{Name: "wildcard in the script name", Reason: InvalidField, ErrorMentions: []string{"script"},
		Body: ev(func(m map[string]any) { m["script"] = "*" })})
	add(Case{Name: "wildcard in the namespace", Reason: InvalidField, ErrorMentions: []string{"dispatch_namespace"},
		Body: ev(func(m map[string]any) { m["dispatch_namespace"] = ">" })})
	add(Case{Name: "namespace \"_\" (the ordinary Worker's token) on the ordinary subject", Reason: InvalidField, ordinary: true,
		ErrorMentions: []string{"dispatch_namespace", "ordinary Workers"},
		Subject:       "bindings." + account + "._." + fmt.Sprintf("bad-%02d", n+1),
		Body:          ev(func(m map[string]any) { m["dispatch_namespace"] = "_"; secretUpsert(m) })})
	add(Case{Name: "namespace with capitals", Reason: InvalidField, ErrorMentions: []string{"dispatch_namespace"},
		Subject: "bindings." + account + ".Customers." + fmt.Sprintf("bad-%02d", n+1),
		Body:    ev(func(m map[string]any) { m["dispatch_namespace"] = "Customers" })})
	add(Case{Name: "dot in a binding name", Reason: InvalidBinding, ErrorMentions: []string{"name"},
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "secret_text", "name": "A.B", "text": Secret}}
		})})
	add(Case{Name: "control character in a binding name", Reason: InvalidBinding, ErrorMentions: []string{"name"},
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "A\nB", "text": "x"}}
		})})
	add(Case{Name: "subject names another script (subject/body mismatch)", Reason: SubjectMismatch,
		Subject: "bindings." + account + "." + Namespace + ".someone-else",
		Body:    ev(secretUpsert)})
	add(Case{Name: "subject says ordinary Worker, body says namespace", Reason: SubjectMismatch,
		Subject: "bindings." + account + "._." + fmt.Sprintf("bad-%02d", n+1),
		Body:    ev(nil)})

	// --- Bindings ----------------------------------------------------------
	add(Case{Name: "conflicting patch: one name upserted and removed", Reason: InvalidBinding, ErrorMentions: []string{"A"},
		Body: ev(func(m map[string]any) { m["remove"] = []any{"A"} })})
	add(Case{Name: "one name upserted twice", Reason: InvalidBinding, ErrorMentions: []string{"duplicate"},
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "A", "text": "1"},
				map[string]any{"type": "secret_text", "name": "A", "text": Secret}}
		})})
	add(Case{Name: "kv_namespace without namespace_id, beside a secret", Reason: InvalidBinding, ErrorMentions: []string{"namespace_id"},
		Body: ev(func(m map[string]any) {
			m["op"], m["bindings"] = "replace", []any{map[string]any{"type": "secret_text", "name": "OK", "text": Secret},
				map[string]any{"type": "kv_namespace", "name": "NO_ID"}}
			delete(m, "upsert")
		})})
	add(Case{Name: "binding that is a string", Reason: InvalidBinding,
		Body: ev(func(m map[string]any) { m["upsert"] = []any{Secret} })})
	add(Case{Name: "secret binding without its type", Reason: InvalidBinding, ErrorMentions: []string{"type"},
		Body: ev(func(m map[string]any) { m["upsert"] = []any{map[string]any{"name": "STRIPE_KEY", "text": Secret}} })})
	add(Case{Name: "secret binding whose type is not a string", Reason: InvalidBinding, ErrorMentions: []string{"type"},
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": []any{"secret_text"}, "name": "STRIPE_KEY", "text": Secret}}
		})})
	add(Case{Name: "plain_text value of 6 KiB (over 5 KiB)", Reason: InvalidBinding, ErrorMentions: []string{"text"},
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "BIG", "text": strings.Repeat("x", 6<<10)}}
		})})
	add(Case{Name: "secret value of 6 KiB (over 5 KiB)", Reason: InvalidBinding, ErrorMentions: []string{"text"},
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "secret_text", "name": "BIG", "text": Secret + strings.Repeat("x", 6<<10)}}
		})})
	add(Case{Name: "json binding with a number beyond float64 (valid JSON: carried through)", Accepted: true, Check: has("J", nil),
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","upsert":[{"type":"json","name":"J","json":1e400}]}`)})

	// --- Size ---------------------------------------------------------------
	add(Case{Name: "2 MiB body", Reason: TooLarge, RefusedAbove: 1 << 20,
		Body: ev(func(m map[string]any) { m["pad"] = strings.Repeat("p", 2<<20); secretUpsert(m) })})
	add(Case{Name: "1 MiB + 1 byte body", Reason: TooLarge, RefusedAbove: 1 << 20,
		Body: func() []byte {
			b := ev(func(m map[string]any) { m["pad"] = "" })
			pad := (1 << 20) + 1 - len(b)
			return ev(func(m map[string]any) { m["pad"] = strings.Repeat("p", pad) })
		}()})

	// --- Valid, if unusual: accepted as docs/events.md says ----------------------
	add(Case{Name: "5,000 bindings in one replace", Accepted: true,
		Body: ev(func(m map[string]any) {
			var bs []any
			for i := 0; i < 5000; i++ {
				bs = append(bs, map[string]any{"type": "plain_text", "name": fmt.Sprintf("V%04d", i), "text": "v"})
			}
			m["op"], m["bindings"] = "replace", bs
			delete(m, "upsert")
		}),
		Check: func(live map[string]json.RawMessage) error {
			for _, name := range []string{"V0000", "V2500", "V4999"} {
				if _, ok := live[name]; !ok {
					return fmt.Errorf("binding %s missing (%d bindings live)", name, len(live))
				}
			}
			return nil
		}})
	add(Case{Name: "generation 2^64-1 (the largest)", Accepted: true,
		Body:  raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","generation":18446744073709551615,"op":"patch","upsert":[{"type":"plain_text","name":"MAXGEN","text":"yes"}]}`),
		Check: has("MAXGEN", textIs("yes"))})
	add(Case{Name: "control characters and HTML in a plain_text value", Accepted: true,
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "CTRL", "text": "a\x00b\x07c\t<script>&amp;</script>"}}
		}),
		Check: has("CTRL", textIs("a\x00b\x07c\t<script>&amp;</script>"))})
	add(Case{Name: "unknown binding type, carried through unchanged", Accepted: true,
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "brand_new_type", "name": "NEW", "widget_id": "w-1", "opts": map[string]any{"z": 1}}}
		}),
		Check: has("NEW", func(b json.RawMessage) bool { return strings.Contains(string(b), `"widget_id":"w-1"`) })})
	add(Case{Name: "unknown top-level member (additive contract)", Accepted: true,
		Body:  ev(func(m map[string]any) { m["future_field"] = map[string]any{"x": 1} }),
		Check: has("A", textIs("1"))})
	add(Case{Name: "a valid patch (control)", Accepted: true,
		Body:  ev(nil),
		Check: has("A", textIs("1"))})
	add(Case{Name: "an account outside the token's scope (403, code 10000) while the token verifies", Reason: Forbidden,
		AtReconcile: true, ErrorMentions: []string{"10000"},
		Subject: "bindings." + ForbiddenAccount + "." + Namespace + "." + fmt.Sprintf("bad-%02d", n+1),
		Body:    ev(func(m map[string]any) { m["account_id"] = ForbiddenAccount; secretUpsert(m) })})
	add(Case{Name: "ordinary Worker: empty dispatch_namespace on the _ subject", Accepted: true, ordinary: true,
		Subject: "bindings." + account + "._." + fmt.Sprintf("bad-%02d", n+1),
		Body:    ev(func(m map[string]any) { m["dispatch_namespace"] = "" }),
		Check:   has("A", textIs("1"))})

	// --- At the bounds, and the same in another spelling ----------------------
	add(Case{Name: "1 MiB less 8 KiB of values exactly 64 levels deep (wide and deep at both limits)", Accepted: true,
		Body: raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","upsert":[{"type":"plain_text","name":"A","text":"1"}],"x":[` +
			strings.TrimSuffix(strings.Repeat(strings.Repeat("[", 62)+strings.Repeat("]", 62)+",", (1<<20-8192)/125), ",") + `]}`),
		Check: has("A", textIs("1"))})
	add(Case{Name: "1 MiB less 8 KiB of one object's members (wide at the size limit)", Accepted: true,
		Body: func() []byte {
			var b strings.Builder
			for i := 0; b.Len() < 1<<20-8192-300; i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `"k%07d":%d`, i, i)
			}
			return raw(`{"schema":"bindings.change/v1","id":"{I}","account_id":"{A}","dispatch_namespace":"customers","script":"{S}","op":"patch","upsert":[{"type":"plain_text","name":"A","text":"1"}],"x":{` + b.String() + `}}`)
		}(),
		Check: has("A", textIs("1"))})
	add(Case{Name: "namespace \"_\" in the body on a namespaced subject", Reason: InvalidField,
		ErrorMentions: []string{"dispatch_namespace"},
		Body:          ev(func(m map[string]any) { m["dispatch_namespace"] = "_" })})

	// --- Redeliveries and replays --------------------------------------------
	// Followers sort before the first event's id, so that no tie of stamps
	// broken by the id could let the first one win again.
	followers := func(prefix string, k int) [][]byte {
		var out [][]byte
		for i := 1; i <= k; i++ {
			out = append(out, ev(func(m map[string]any) {
				m["id"] = fmt.Sprintf("bad-ea-%02d-%02d", n+1, i)
				delete(m, "generation")
				m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "X", "text": fmt.Sprintf("%s%d", prefix, i+1)}}
			}))
		}
		return out
	}
	add(Case{Name: fmt.Sprintf("an event without generation redelivered after %d later ones: the last stays", redeliveryFollowers),
		Accepted: true, API: API{FailFirstReconcile: true},
		Body: ev(func(m map[string]any) {
			delete(m, "generation")
			m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "X", "text": "v1"}}
		}),
		Then:  []Step{{Early: true, Events: followers("v", redeliveryFollowers)}},
		Check: has("X", textIs(fmt.Sprintf("v%d", redeliveryFollowers+1)))})
	for _, gen := range []int{0, 7} {
		add(Case{Name: fmt.Sprintf("dlq replay of a quarantined event (generation %d) once the Worker has what it inherits: applied", gen),
			Accepted: true,
			Body: ev(func(m map[string]any) {
				m["generation"] = gen
				if gen == 0 {
					delete(m, "generation")
				}
				m["upsert"] = []any{map[string]any{"type": "inherit", "name": "INHERITED"}}
			}),
			Then:  []Step{{Tenant: []string{`{"type":"plain_text","name":"INHERITED","text":"set by hand"}`}, Replay: true}},
			Check: has("INHERITED", textIs("set by hand"))})
	}
	add(Case{Name: "dlq replay of a quarantined event without generation, nothing fixed: dead-lettered again", Reason: InvalidDesired,
		AtReconcile:   true,
		ErrorMentions: []string{"INHERITED"},
		Body: ev(func(m map[string]any) {
			delete(m, "generation")
			m["upsert"] = []any{map[string]any{"type": "inherit", "name": "INHERITED"}}
		}),
		Then: []Step{{Replay: true}}})

	// --- What the API answers ------------------------------------------------
	add(Case{Name: "HTML page with 200 on the first 2 settings reads: retried, applied", Accepted: true,
		API: API{PageReads: 2}, Body: ev(nil), Check: has("A", textIs("1"))})
	add(Case{Name: "HTML page with 200 on the first 2 writes: re-read, applied", Accepted: true,
		API: API{PageWrites: 2}, Body: ev(nil), Check: has("A", textIs("1"))})
	add(Case{Name: "a removal a replace implies, refused by the API: the replace dead-lettered, a later patch lands", Reason: APIRejected,
		AtReconcile:   true,
		ErrorMentions: []string{"STUCK"}, API: API{RefuseRemoval: "STUCK"},
		Body: ev(func(m map[string]any) {
			m["op"], m["bindings"] = "replace", []any{map[string]any{"type": "plain_text", "name": "STUCK", "text": "1"},
				map[string]any{"type": "plain_text", "name": "KEEP", "text": "1"}}
			delete(m, "upsert")
		}),
		Then: []Step{
			{Events: [][]byte{ev(func(m map[string]any) {
				m["id"], m["generation"], m["op"] = fmt.Sprintf("bad-ev-%02d-drops", n+1), 2, "replace"
				m["bindings"] = []any{map[string]any{"type": "plain_text", "name": "KEEP", "text": "2"}}
				delete(m, "upsert")
			})}},
			{Events: [][]byte{ev(func(m map[string]any) {
				m["id"], m["generation"] = fmt.Sprintf("bad-ev-%02d-later", n+1), 3
				m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "LATER", "text": "yes"}}
			})}},
		},
		Check: func(live map[string]json.RawMessage) error {
			for _, c := range []struct{ name, text string }{{"STUCK", "1"}, {"LATER", "yes"}} {
				if err := has(c.name, textIs(c.text))(live); err != nil {
					return err
				}
			}
			return nil
		}})
	add(Case{Name: "old_name created again by the tenant after a rename: left alone, the rename not redone", Accepted: true,
		Live: []string{`{"type":"plain_text","name":"OLD_NAME","text":"renamed value"}`},
		Body: ev(func(m map[string]any) {
			m["upsert"] = []any{map[string]any{"type": "inherit", "name": "NEW_NAME", "old_name": "OLD_NAME"}}
		}),
		Then: []Step{{Tenant: []string{`{"type":"plain_text","name":"OLD_NAME","text":"the tenant's own"}`},
			Events: [][]byte{ev(func(m map[string]any) {
				m["id"], m["generation"] = fmt.Sprintf("bad-ev-%02d-later", n+1), 2
				m["upsert"] = []any{map[string]any{"type": "plain_text", "name": "LATER", "text": "yes"}}
			})}}},
		Check: func(live map[string]json.RawMessage) error {
			for _, c := range []struct{ name, text string }{{"NEW_NAME", "renamed value"}, {"OLD_NAME", "the tenant's own"}, {"LATER", "yes"}} {
				if err := has(c.name, textIs(c.text))(live); err != nil {
					return err
				}
			}
			return nil
		}})
	return cases
}
