package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/reconciler/reconciler/internal/testutil"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

const (
	propAccount = "023e105f4ecef8ad9ca31a8372d0c353"
	propScript  = "tenant-42"
)

// spec is a generated binding before it is written out: its type, name and
// members other than type and name.
type spec struct {
	typ, name string
	members   []member
}

// gen generates random binding sets from the binding corpus (every
// documented type) plus an unknown type.
type gen struct {
	r         *rand.Rand
	templates []spec
}

func newGen(t testing.TB, seed uint64) *gen {
	t.Helper()
	corpusRaws := testutil.CorpusBindings(t)
	g := &gen{r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	raws := append(corpusRaws, json.RawMessage(`{"type":"stream","name":"VIDEO","video_id":"abc","opts":{"a":1,"b":[true,null]}}`))
	types := map[string]bool{}
	for _, raw := range raws {
		b := mb(string(raw))
		if b.Type() == wire.TypeInherit {
			continue // generated separately: it is never stored
		}
		types[b.Type()] = true
		var ms []member
		for _, m := range members(b.Raw()) {
			if m.key != "type" && m.key != "name" {
				ms = append(ms, m)
			}
		}
		g.templates = append(g.templates, spec{typ: b.Type(), members: ms})
	}
	if len(types) != 35 { // 34 documented types besides inherit, plus one unknown
		t.Fatalf("corpus gives %d types", len(types))
	}
	return g
}

var jsonPool = []string{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1}`, `[1,2,3]`, `"text"`, `42`, `{"nested":{"x":true,"y":null}}`, `{"nested":{"y":null,"x":true}}`, `1.50`}

// value returns a random value for a member: mostly one of a few, so that
// desired and live values often coincide.
func (g *gen) value(typ string, m member) json.RawMessage {
	q := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	switch {
	case typ == wire.TypeSecretText && m.key == "text":
		return q(fmt.Sprintf("%s-text-%d", secretMarker, g.r.IntN(3)))
	case typ == wire.TypeSecretKey && m.key == "key_base64":
		return q(fmt.Sprintf("%s%d", secretMarker, g.r.IntN(3)))
	case typ == wire.TypeJSON && m.key == "json":
		return json.RawMessage(jsonPool[g.r.IntN(len(jsonPool))])
	case m.key == "part":
		return q([]string{"a.wasm", "b.bin", "t.txt"}[g.r.IntN(3)])
	case m.key == "jurisdiction":
		return q([]string{"eu", "fedramp"}[g.r.IntN(2)])
	case m.key == "format" || m.key == "usages" || m.key == "algorithm":
		return m.val
	case len(m.val) > 0 && m.val[0] == '"' && g.r.IntN(2) == 0:
		var s string
		_ = json.Unmarshal(m.val, &s)
		return q(fmt.Sprintf("%s-%d", s, g.r.IntN(3)))
	}
	return m.val
}

// randomSpec returns a binding of a random type and values.
func (g *gen) randomSpec(name string) spec {
	t := g.templates[g.r.IntN(len(g.templates))]
	s := spec{typ: t.typ, name: name}
	for _, m := range t.members {
		s.members = append(s.members, member{m.key, g.value(t.typ, m)})
	}
	return s
}

// write renders a spec as binding JSON, with random rewrites that the API
// treats as the same binding: d1 id for database_id, the defaults of service
// environment and ai_search namespace spelled out or left out, an empty R2
// jurisdiction, and member order.
func (g *gen) write(s spec) wire.Binding {
	ms := slices.Clone(s.members)
	coin := func() bool { return g.r.IntN(3) == 0 }
	addDefault := func(key, val string) {
		if !slices.ContainsFunc(ms, func(m member) bool { return m.key == key }) && coin() {
			ms = append(ms, member{key, json.RawMessage(val)})
		}
	}
	switch s.typ {
	case wire.TypeD1:
		for i := range ms {
			if ms[i].key == "database_id" && coin() {
				ms[i].key = "id"
			}
		}
	case wire.TypeService:
		addDefault("environment", `"production"`)
	case wire.TypeAISearch:
		addDefault("namespace", `"default"`)
	case wire.TypeR2Bucket:
		addDefault("jurisdiction", `""`)
	}
	if coin() {
		g.r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"type":%q,"name":%q`, s.typ, s.name)
	for _, m := range ms {
		fmt.Fprintf(&buf, ",%q:%s", m.key, m.val)
	}
	buf.WriteByte('}')
	return mb(buf.String())
}

// scenario is one random input of the planner, with the API's stored state
// behind the live state.
type scenario struct {
	stored []wire.Binding // what the API holds, secret values included
	live   []wire.Binding // what GET shows
	d      Desired
	last   LastApplied
}

func (g *gen) scenario(p *Planner) scenario {
	var sc scenario
	n := 1 + g.r.IntN(12)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("B%d", i)
	}
	storedSpec := map[string]spec{}
	for _, name := range names {
		if g.r.IntN(10) < 6 {
			s := g.randomSpec(name)
			storedSpec[name] = s
			sc.stored = append(sc.stored, g.write(s))
		}
	}
	sc.last.Bindings = map[string]Applied{}
	for _, b := range sc.stored {
		switch x := g.r.IntN(20); {
		case x < 10: // the reconciler wrote it
			sc.last.Bindings[b.Name()] = Applied{Type: b.Type(), Fingerprint: p.Fingerprint(b)}
		case x < 13: // it wrote another value
			sc.last.Bindings[b.Name()] = Applied{Type: b.Type(), Fingerprint: "0123456789abcdef0123456789abcdef"}
		case x < 15: // it wrote another type
			sc.last.Bindings[b.Name()] = Applied{Type: "kv_namespace", Fingerprint: "x"}
		}
	}
	for _, name := range names {
		if _, ok := storedSpec[name]; !ok && g.r.IntN(5) == 0 {
			sc.last.Bindings[name] = Applied{Type: "plain_text", Fingerprint: "y"}
		}
	}
	for _, name := range names {
		switch x := g.r.IntN(100); {
		case x < 25: // what is live, possibly spelled differently
			if s, ok := storedSpec[name]; ok {
				sc.d.Bindings = append(sc.d.Bindings, g.write(s))
			}
		case x < 50:
			sc.d.Bindings = append(sc.d.Bindings, g.write(g.randomSpec(name)))
		case x < 54:
			sc.d.Bindings = append(sc.d.Bindings, mb(fmt.Sprintf(`{"type":"inherit","name":%q}`, name)))
		case x < 58:
			old := names[g.r.IntN(n)]
			sc.d.Bindings = append(sc.d.Bindings, mb(fmt.Sprintf(`{"type":"inherit","name":%q,"old_name":%q}`, name, old)))
		case x < 68:
			sc.d.Remove = append(sc.d.Remove, name)
		}
	}
	sc.d.Exclusive = g.r.IntN(2) == 0
	sc.d.Strategy = []Strategy{"", StrategyAuto, StrategySettings, StrategyScript, StrategyVersion}[g.r.IntN(5)]
	g.r.Shuffle(len(sc.d.Bindings), func(i, j int) { sc.d.Bindings[i], sc.d.Bindings[j] = sc.d.Bindings[j], sc.d.Bindings[i] })
	sc.live = cfapitest.RenderForGet(propAccount, propScript, sc.stored)
	return sc
}

// apply carries out a plan's request as the API does.
func apply(stored []wire.Binding, pl *Plan) ([]wire.Binding, error) {
	switch pl.Strategy {
	case StrategyNone:
		return stored, nil
	case StrategySettings:
		return cfapitest.ApplySettingsPatch(stored, pl.Request.Bindings)
	default:
		return cfapitest.ApplyUpload(stored, pl.Request.Bindings, pl.Request.KeepBindings, true, pl.NeedsParts)
	}
}

// checkPlan checks the invariants of one plan of sc and returns what it
// skipped, if anything.
func checkPlan(t *testing.T, p *Planner, sc scenario) (outcome string) {
	t.Helper()
	pl, err := p.Plan(sc.d, sc.live, sc.last)
	verr := Validate(sc.d)
	if err != nil {
		var ve *wire.ValidationError
		var pe *Error
		switch {
		case errors.As(err, &ve):
			if verr == nil || verr.Error() != err.Error() {
				t.Fatalf("Plan: %v, but Validate: %v", err, verr)
			}
			return "invalid"
		case errors.As(err, &pe):
			if verr != nil {
				t.Fatalf("Plan: %v, Validate: %v", err, verr)
			}
			return "unplannable"
		}
		t.Fatalf("Plan: unexpected error %T %v", err, err)
	}
	if verr != nil {
		t.Fatalf("Validate: %v, but Plan succeeded", verr)
	}
	checkNoSecret(t, pl)

	stored, err := apply(sc.stored, pl)
	if err != nil {
		t.Fatalf("the API rejects the request: %v\nplan:\n%s\nrequest: %s\nkeep %v parts %v", err, pl, settingsBody(pl.Request), pl.Request.KeepBindings, pl.NeedsParts)
	}
	after := wire.Bindings(stored)

	// No binding someone else created disappears or changes unless the
	// desired state names it.
	renamed := map[string]bool{}
	for _, b := range sc.d.Bindings {
		if old, ok := b.String("old_name"); ok && b.Type() == wire.TypeInherit {
			renamed[old] = true
		}
	}
	for _, b := range sc.stored {
		rec, ok := sc.last.Bindings[b.Name()]
		owned := ok && rec.Type == b.Type()
		_, desired := wire.Bindings(sc.d.Bindings).ByName(b.Name())
		if owned || desired || slices.Contains(sc.d.Remove, b.Name()) || renamed[b.Name()] {
			continue
		}
		now, ok := after.ByName(b.Name())
		if !ok || !bytes.Equal(now.Raw(), b.Raw()) {
			t.Fatalf("unowned binding %s was removed or changed (now %s)\nplan:\n%s", b.Raw(), now.Raw(), pl)
		}
	}
	// Desired secrets hold their desired values.
	for _, d := range sc.d.Bindings {
		if d.WriteOnly() {
			now, ok := after.ByName(d.Name())
			if !ok || p.Fingerprint(now) != p.Fingerprint(d) {
				t.Fatalf("secret %s does not hold its desired value\nplan:\n%s", d.Name(), pl)
			}
		}
	}
	// The record holds only desired or previously owned names.
	for name := range pl.Applied.Bindings {
		_, desired := wire.Bindings(sc.d.Bindings).ByName(name)
		if _, owned := sc.last.Bindings[name]; !desired && !owned {
			t.Fatalf("record adopts %s, which is neither desired nor owned", name)
		}
	}

	// Planning again against the result is a no-op with the same record.
	live := cfapitest.RenderForGet(propAccount, propScript, stored)
	again, err := p.Plan(sc.d, live, pl.Applied)
	if err != nil {
		t.Fatalf("replan: %v\nfirst plan:\n%s", err, pl)
	}
	if !again.NoOp() {
		t.Fatalf("replan is not a no-op:\n%s\nfirst plan:\n%s\ndesired: %s\nstored: %s\nlive after: %s",
			again, pl, raws(sc.d.Bindings), raws(sc.stored), raws(live))
	}
	if !again.Applied.Equal(pl.Applied) {
		t.Fatalf("record is not a fixed point:\n%v\n%v", pl.Applied, again.Applied)
	}
	if pl.NoOp() {
		return "no-op"
	}
	return "written: " + string(pl.Strategy)
}

// TestPropertyConverges plans random desired, live and recorded states,
// applies each plan with the emulator's semantics and plans again: the
// second plan must be a no-op, no unowned binding may be lost, and no
// output may show a secret.
func TestPropertyConverges(t *testing.T) {
	trials := 1500
	if testing.Short() {
		trials = 200
	}
	p := testPlanner(t)
	g := newGen(t, 20261122)
	outcomes := map[string]int{}
	for i := range trials {
		sc := g.scenario(p)
		var outcome string
		t.Run(fmt.Sprint(i), func(t *testing.T) { outcome = checkPlan(t, p, sc) })
		if t.Failed() {
			t.Fatalf("trial %d failed", i)
		}
		outcomes[outcome]++
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["written: settings"] == 0 || outcomes["written: script"] == 0 || outcomes["written: version"] == 0 || outcomes["no-op"] == 0 {
		t.Errorf("the generator misses a kind of plan: %v", outcomes)
	}
	if planned := trials - outcomes["invalid"] - outcomes["unplannable"]; planned < trials/2 {
		t.Errorf("only %d of %d trials could be planned: %v", planned, trials, outcomes)
	}
}
