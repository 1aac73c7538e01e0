package planner_test

import (
	"fmt"
	"log"
	"os"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/planner"
)

func ExamplePlanner_Plan() {
	p, err := planner.New(planner.Options{FingerprintKey: []byte("example key")})
	if err != nil {
		log.Fatal(err)
	}
	mb := wire.MustParseBinding

	// What the reconciler wrote last time: VERSION "1", an R2 bucket and a secret.
	last := planner.LastApplied{Bindings: map[string]planner.Applied{}}
	for _, b := range []wire.Binding{
		mb(`{"type":"plain_text","name":"VERSION","text":"1"}`),
		mb(`{"type":"r2_bucket","name":"OLD","bucket_name":"tenant-42-old"}`),
		mb(`{"type":"secret_text","name":"API_KEY","text":"sk_live_old"}`),
	} {
		last.Bindings[b.Name()] = planner.Applied{Type: b.Type(), Fingerprint: p.Fingerprint(b)}
	}

	// What the script has now, as GET returns it (no secret values).
	live := []wire.Binding{
		mb(`{"type":"secret_text","name":"API_KEY"}`),
		mb(`{"type":"d1","name":"THEIR_DB","database_id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb29"}`),
		mb(`{"type":"r2_bucket","name":"OLD","bucket_name":"tenant-42-old"}`),
		mb(`{"type":"plain_text","name":"VERSION","text":"1"}`),
		mb(`{"type":"service","name":"AUTH","service":"auth","environment":"production"}`),
	}

	// A replace event: the complete set the reconciler manages.
	desired := planner.Desired{
		Bindings: []wire.Binding{
			mb(`{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`),
			mb(`{"type":"plain_text","name":"VERSION","text":"2"}`),
			mb(`{"type":"secret_text","name":"API_KEY","text":"sk_live_new"}`),
			mb(`{"type":"service","name":"AUTH","service":"auth"}`),
		},
		Exclusive: true,
	}

	plan, err := p.Plan(desired, live, last)
	if err != nil {
		log.Fatal(err)
	}
	if err := plan.Render(os.Stdout); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", plan.Request)

	// Output:
	// ~ secret_text API_KEY: (sensitive) (new secret value)
	// - r2_bucket OLD (no longer desired)
	// ! d1 THEIR_DB (left alone: created outside the reconciler)
	// + kv_namespace USER_KV  namespace_id="0f2ac74b498b48028cb68387c421e279"
	// ~ plain_text VERSION: "1" → "2"
	// Plan: 1 to add, 2 to change, 1 to remove, 1 unchanged, 1 left alone. Write: settings.
	// Request{bindings: [secret_text API_KEY, service AUTH, d1 THEIR_DB, kv_namespace USER_KV, plain_text VERSION]}
}
