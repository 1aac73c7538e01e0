package planner

import (
	"fmt"
	"io"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// scenario60 is a script with 60 live bindings of mixed types, three of them
// secrets: most unchanged, three values and one secret changed, two added,
// two removed by name, one removed by a replace, four left alone.
func scenario60(tb testing.TB, p *Planner) (Desired, []wire.Binding, LastApplied) {
	tb.Helper()
	mb := wire.MustParseBinding
	var desired, live []wire.Binding
	last := LastApplied{Bindings: map[string]Applied{}}
	own := func(b wire.Binding) {
		last.Bindings[b.Name()] = Applied{Type: b.Type(), Fingerprint: p.Fingerprint(b)}
	}
	both := func(d, l string) {
		db := mb(d)
		desired = append(desired, db)
		live = append(live, mb(l))
		own(db)
	}
	for i := range 15 {
		s := fmt.Sprintf(`{"type":"kv_namespace","name":"KV_%02d","namespace_id":"0f2ac74b498b48028cb68387c421e2%02d"}`, i, i)
		both(s, s)
	}
	for i := range 8 {
		both(fmt.Sprintf(`{"type":"r2_bucket","name":"BUCKET_%02d","bucket_name":"tenant-42-files-%d"}`, i, i),
			fmt.Sprintf(`{"type":"r2_bucket","name":"BUCKET_%02d","bucket_name":"tenant-42-files-%d","jurisdiction":""}`, i, i))
	}
	for i := range 6 {
		both(fmt.Sprintf(`{"type":"d1","name":"DB_%02d","id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb%02d"}`, i, i),
			fmt.Sprintf(`{"type":"d1","name":"DB_%02d","database_id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb%02d"}`, i, i))
	}
	for i := range 6 {
		both(fmt.Sprintf(`{"type":"service","name":"SVC_%02d","service":"auth-worker-%d"}`, i, i),
			fmt.Sprintf(`{"type":"service","name":"SVC_%02d","service":"auth-worker-%d","environment":"production"}`, i, i))
	}
	for i := range 10 {
		d := fmt.Sprintf(`{"type":"plain_text","name":"VAR_%02d","text":"value-%d"}`, i, i)
		l := d
		if i < 3 { // three changed values
			l = fmt.Sprintf(`{"type":"plain_text","name":"VAR_%02d","text":"old-%d"}`, i, i)
		}
		both(d, l)
	}
	for i := range 3 {
		both(fmt.Sprintf(`{"type":"json","name":"CONF_%02d","json":{"b":[1,2,%d],"a":{"y":true,"x":null}}}`, i, i),
			fmt.Sprintf(`{"type":"json","name":"CONF_%02d","json":{"a":{"x":null,"y":true},"b":[1,2,%d]}}`, i, i))
	}
	for i := range 2 {
		both(fmt.Sprintf(`{"type":"durable_object_namespace","name":"DO_%02d","class_name":"Counter%d"}`, i, i),
			fmt.Sprintf(`{"type":"durable_object_namespace","name":"DO_%02d","class_name":"Counter%d","namespace_id":"9a7b%028d"}`, i, i, i))
	}
	// Secrets: one unchanged, one with a new value, one secret_key unchanged.
	both(`{"type":"secret_text","name":"API_KEY","text":"sk_live_1"}`, `{"type":"secret_text","name":"API_KEY"}`)
	sec := mb(`{"type":"secret_text","name":"WEBHOOK_SECRET","text":"whsec_new"}`)
	desired = append(desired, sec)
	live = append(live, mb(`{"type":"secret_text","name":"WEBHOOK_SECRET"}`))
	own(mb(`{"type":"secret_text","name":"WEBHOOK_SECRET","text":"whsec_old"}`))
	both(`{"type":"secret_key","name":"SIGNING_KEY","algorithm":{"name":"HMAC","hash":"SHA-256"},"format":"raw","usages":["sign","verify"],"key_base64":"c2VjcmV0"}`,
		`{"type":"secret_key","name":"SIGNING_KEY","algorithm":{"name":"HMAC","hash":"SHA-256"},"format":"raw","usages":["sign","verify"]}`)
	// Two added.
	desired = append(desired,
		mb(`{"type":"kv_namespace","name":"NEW_KV","namespace_id":"aaaac74b498b48028cb68387c421e279"}`),
		mb(`{"type":"queue","name":"NEW_QUEUE","queue_name":"tenant-42-jobs"}`))
	// Two removed by name (one owned, one not), one owned and no longer desired.
	live = append(live,
		mb(`{"type":"queue","name":"OLD_QUEUE","queue_name":"old-jobs"}`),
		mb(`{"type":"r2_bucket","name":"OLD_BUCKET","bucket_name":"old"}`),
		mb(`{"type":"kv_namespace","name":"STALE_KV","namespace_id":"bbbbc74b498b48028cb68387c421e279"}`))
	own(mb(`{"type":"queue","name":"OLD_QUEUE","queue_name":"old-jobs"}`))
	own(mb(`{"type":"kv_namespace","name":"STALE_KV","namespace_id":"bbbbc74b498b48028cb68387c421e279"}`))
	// Four left alone: created outside the reconciler.
	live = append(live,
		mb(`{"type":"d1","name":"THEIR_DB","database_id":"c0ffee"}`),
		mb(`{"type":"plain_text","name":"THEIR_VAR","text":"x"}`),
		mb(`{"type":"secret_text","name":"THEIR_SECRET"}`),
		mb(`{"type":"analytics_engine","name":"THEIR_EVENTS","dataset":"events"}`))
	// Live comes back in API order, not sorted.
	for i, j := 0, len(live)-1; i < j; i, j = i+2, j-2 {
		live[i], live[j] = live[j], live[i]
	}
	return Desired{Bindings: desired, Remove: []string{"OLD_QUEUE", "OLD_BUCKET"}, Exclusive: true}, live, last
}

func benchPlanner(b *testing.B) *Planner {
	p, err := New(Options{FingerprintKey: []byte("benchmark fingerprint key, 32 b")})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkPlan60(b *testing.B) {
	p := benchPlanner(b)
	d, live, last := scenario60(b, p)
	pl, err := p.Plan(d, live, last)
	if err != nil {
		b.Fatal(err)
	}
	if s := pl.Summary(); len(live) != 60 || s.Add != 2 || s.Update != 4 || s.Remove != 3 || s.Unowned != 4 {
		b.Fatalf("unexpected scenario: %d live, %+v", len(live), s)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Plan(d, live, last); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlan60Render(b *testing.B) {
	p := benchPlanner(b)
	d, live, last := scenario60(b, p)
	b.ReportAllocs()
	for b.Loop() {
		pl, err := p.Plan(d, live, last)
		if err != nil {
			b.Fatal(err)
		}
		if err := pl.Render(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlan60JSON(b *testing.B) {
	p := benchPlanner(b)
	d, live, last := scenario60(b, p)
	b.ReportAllocs()
	for b.Loop() {
		pl, err := p.Plan(d, live, last)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pl.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint(b *testing.B) {
	p := benchPlanner(b)
	bd := wire.MustParseBinding(`{"type":"secret_text","name":"API_KEY","text":"sk_live_0123456789"}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Fingerprint(bd)
	}
}
