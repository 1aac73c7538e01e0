package cfapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
)

// TestProbeCalls: the calls of `reconciler doctor` against the emulator:
// the token verified, a dispatch script's details, and a script deleted
// (then missing: ErrNotFound), for both kinds of script.
func TestProbeCalls(t *testing.T) {
	ctx := context.Background()
	fx := setup(t)
	if err := fx.srv.Seed(account, []string{dispatchNS}, 1); err != nil {
		t.Fatal(err)
	}
	tok, err := fx.client.VerifyToken(ctx)
	if err != nil || tok.Status != "active" || tok.ID == "" || strings.Contains(tok.ID, testToken) {
		t.Fatalf("VerifyToken = %+v, %v", tok, err)
	}
	ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(1)}
	d, err := fx.client.GetScriptDetails(ctx, ref)
	if err != nil || d.ModifiedOn == "" || d.CreatedOn == "" {
		t.Fatalf("GetScriptDetails = %+v, %v", d, err)
	}
	if _, err := fx.client.GetScriptDetails(ctx, cfapi.ScriptRef{AccountID: account, Script: "w"}); err == nil {
		t.Error("details of an ordinary Worker: want an error (there is no such route)")
	}
	ordinary := cfapi.ScriptRef{AccountID: account, Script: "plain-worker"}
	if err := fx.srv.PutScript(account, "", ordinary.Script, cfapitest.Script{MainModule: "index.js",
		Modules: []cfapitest.Module{{Name: "index.js", ContentType: "application/javascript+module", Data: []byte("export default {}")}}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []cfapi.ScriptRef{ref, ordinary} {
		if err := fx.client.DeleteScript(ctx, r); err != nil {
			t.Fatalf("DeleteScript(%s): %v", r, err)
		}
		if _, ok := fx.srv.Script(account, r.Namespace, r.Script); ok {
			t.Errorf("%s still exists", r)
		}
		if err := fx.client.DeleteScript(ctx, r); !errors.Is(err, cfapi.ErrNotFound) {
			t.Errorf("deleting %s again: %v, want ErrNotFound", r, err)
		}
	}
	for _, req := range fx.wire.requests() {
		if req.Method == "DELETE" && req.URL.Query().Get("force") != "true" {
			t.Errorf("DELETE %s without force=true", req.URL.Path)
		}
	}
}
