package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// TestBackfillNamespaceWithoutScriptList: against an API that does not
// serve the namespace script list (404 and 405), a namespace run applies
// its patch to the scripts the reconciler knows (their desired state),
// reading each one (--skip-unmodified has nothing to compare), with one
// warning and one list request; a tag filter is refused before anything
// is written.
func TestBackfillNamespaceWithoutScriptList(t *testing.T) {
	for _, mode := range []cfapitest.ScriptListMode{cfapitest.ScriptListNotFound, cfapitest.ScriptListNotAllowed} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			emu, base := cfapitest.NewTestServer(t, cfapitest.Options{Guesses: cfapitest.SpecGuesses{ScriptList: mode}})
			if err := emu.Seed(acct, []string{"customers"}, 5); err != nil {
				t.Fatal(err)
			}
			env := backfillEnv(t, base)
			// The reconciler learns three of the five scripts.
			var lines []string
			for i := 1; i <= 3; i++ {
				lines = append(lines, fmt.Sprintf(`{"schema":"bindings.change/v1","id":"k%[2]d","account_id":"%[1]s","dispatch_namespace":"customers","script":"%[3]s","op":"patch","upsert":[{"type":"plain_text","name":"K","text":"1"}]}`,
					acct, i, cfapitest.TenantName(i)))
			}
			from := writeFile(t, "known.jsonl", strings.Join(lines, "\n")+"\n")
			if code, out, stderr := call(t, env, "", "backfill", "--from", from, "--output", "json", "--progress", "none"); code != 0 {
				t.Fatalf("learning run: exit %d\n%s\n%s", code, out, stderr)
			}
			patch := writeFile(t, "patch.json", `{"upsert":[{"type":"plain_text","name":"P","text":"2"}]}`)
			emu.ResetStats()
			code, out, stderr := call(t, env, "", "backfill", "--namespace", "customers", "--patch", patch, "--skip-unmodified",
				"--output", "json", "--progress", "none")
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
			}
			if s := lastJSON(t, out); s.Scripts != 3 || s.Changed != 3 || s.Failed != 0 {
				t.Errorf("summary %+v, want the 3 known scripts changed", s)
			}
			for i := 1; i <= 5; i++ {
				bs, _ := emu.Bindings(acct, "customers", cfapitest.TenantName(i))
				_, has := wire.Bindings(bs).ByName("P")
				if has != (i <= 3) {
					t.Errorf("%s has P: %v", cfapitest.TenantName(i), has)
				}
			}
			lists := 0
			for _, n := range emu.Stats().Requests[cfapitest.EndpointListScripts] {
				lists += n
			}
			if lists != 1 {
				t.Errorf("%d list requests, want 1 (no retry loop)", lists)
			}
			if n := strings.Count(stderr, "does not serve the dispatch namespace script list"); n != 1 {
				t.Errorf("%d warnings, want 1:\n%s", n, stderr)
			}
			code, _, stderr = call(t, env, "", "backfill", "--namespace", "customers", "--patch", patch, "--tag", "plan:pro",
				"--run-id", "tagged", "--progress", "none")
			if code != 1 || !strings.Contains(stderr, "--tag needs the namespace's script list") {
				t.Errorf("with --tag: exit %d\n%s", code, stderr)
			}
		})
	}
}
