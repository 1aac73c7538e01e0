package cfapitest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// SeedVaried creates n tenant scripts (TenantName(1..n)) in dispatch
// namespace ns (created if needed) whose existing bindings vary the way a
// real platform's do: every tenant has a secret and bindings nobody told
// the reconciler about, and each carries a rotating selection of the
// common types (KV, R2, D1, queues, services, Durable Objects, JSON and
// plain vars, AI, analytics, hyperdrive, vectorize, rate limits). Tags
// "seeded" and "plan-<free|pro|enterprise>" let runs select tenants. Each
// extra function may add bindings to tenant i.
func (s *Server) SeedVaried(account, ns string, n int, extra ...func(i int) []wire.Binding) error {
	if ns != "" {
		if err := s.CreateNamespace(account, ns); err != nil {
			return err
		}
	}
	for i := 1; i <= n; i++ {
		sc := variedTenant(ns, i)
		for _, x := range extra {
			sc.Bindings = dedupe(append(sc.Bindings, x(i)...))
		}
		if err := s.PutScript(account, ns, TenantName(i), sc); err != nil {
			return err
		}
	}
	return nil
}

// variedTenant builds tenant i of SeedVaried.
func variedTenant(ns string, i int) Script {
	name := TenantName(i)
	id := func(kind string) string {
		sum := sha256.Sum256([]byte(kind + "\x00" + ns + "\x00" + name))
		return hex.EncodeToString(sum[:16])
	}
	b := func(typ, bname string, fields map[string]any) wire.Binding {
		bnd, err := wire.NewBinding(typ, bname, fields)
		if err != nil {
			panic(err) // the literals below are valid
		}
		return bnd
	}
	all := []wire.Binding{
		b(wire.TypeKVNamespace, "CACHE", map[string]any{"namespace_id": id("kv")}),
		b(wire.TypeR2Bucket, "UPLOADS", map[string]any{"bucket_name": "uploads-" + name}),
		b(wire.TypeD1, "DB", map[string]any{"id": fmt.Sprintf("%s-%s-%s-%s-%s", id("d1")[:8], id("d1")[8:12], id("d1")[12:16], id("d1")[16:20], id("d1")[20:32])}),
		b(wire.TypeQueue, "EVENTS", map[string]any{"queue_name": "events-" + name}),
		b(wire.TypeService, "AUTH", map[string]any{"service": "auth-gateway"}),
		b(wire.TypeDurableObjectNamespace, "ROOMS", map[string]any{"class_name": "Room"}),
		b(wire.TypeJSON, "FEATURES", map[string]any{"json": map[string]any{"beta": i%2 == 0, "quota": 100 * (i%5 + 1)}}),
		b(wire.TypeAI, "AI", nil),
		b(wire.TypeAnalyticsEngine, "METRICS", map[string]any{"dataset": "tenant_metrics"}),
		b(wire.TypeHyperdrive, "PG", map[string]any{"id": id("hd")}),
		b(wire.TypeVectorize, "VECTORS", map[string]any{"index_name": "idx-" + name}),
	}
	bindings := []wire.Binding{
		b(wire.TypePlainText, "TENANT", map[string]any{"text": name}),
		b(wire.TypeSecretText, "API_TOKEN", map[string]any{"text": "seed-secret-" + ns + "-" + name}),
	}
	// A rotating selection of three to six of the common types.
	for k := 0; k < 3+i%4; k++ {
		bindings = append(bindings, all[(i+k*3)%len(all)])
	}
	bindings = dedupe(bindings)
	plan := []string{"free", "pro", "enterprise"}[i%3]
	tags, _ := json.Marshal([]string{"seeded", "plan-" + plan})
	return Script{
		MainModule: "index.js",
		Modules: []Module{{Name: "index.js", ContentType: "application/javascript+module",
			Data: fmt.Appendf(nil, "export default { fetch() { return new Response(%q); } };\n", name)}},
		Bindings: bindings,
		Settings: map[string]json.RawMessage{
			"compatibility_date": json.RawMessage(`"2025-01-01"`),
			"tags":               tags,
		},
	}
}

func dedupe(bs []wire.Binding) []wire.Binding {
	seen := map[string]bool{}
	out := bs[:0]
	for _, b := range bs {
		if !seen[b.Name()] {
			seen[b.Name()] = true
			out = append(out, b)
		}
	}
	return out
}
