package cfapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// TestBadResponseIsRetried: a 200 answer that is not the API's JSON
// envelope (a proxy's or a challenge page) is transient: the client retries
// it with its backoff, and when every attempt gets one the error matches
// ErrBadResponse, never an API rejection.
func TestBadResponseIsRetried(t *testing.T) {
	t.Parallel()
	ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(1)}
	t.Run("pages then the API", func(t *testing.T) {
		t.Parallel()
		fx := setupWith(t, cfapitest.Options{}, cfapi.Config{Retry: cfapi.RetryPolicy{MaxAttempts: 4}})
		fx.seed(t, dispatchNS, 1)
		fx.srv.AnswerPageNext(2, cfapitest.EndpointGetSettings)
		if _, err := fx.client.GetSettings(context.Background(), ref); err != nil {
			t.Fatalf("GetSettings after two pages: %v", err)
		}
		if diff := cmp.Diff(map[string]map[int]int{cfapitest.EndpointGetSettings: {200: 3}}, fx.stats(t).Requests); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}
		if got := fx.retries.Load(); got != 2 {
			t.Errorf("%d retries, want 2", got)
		}
	})
	t.Run("pages until giving up", func(t *testing.T) {
		t.Parallel()
		fx := setupWith(t, cfapitest.Options{}, cfapi.Config{Retry: cfapi.RetryPolicy{MaxAttempts: 3}})
		fx.seed(t, dispatchNS, 1)
		fx.srv.AnswerPageNext(100, cfapitest.EndpointGetSettings)
		_, err := fx.client.GetSettings(context.Background(), ref)
		var ae *cfapi.APIError
		if !errors.Is(err, cfapi.ErrBadResponse) || !errors.As(err, &ae) || !ae.BadResponse() {
			t.Fatalf("err = %v, want ErrBadResponse", err)
		}
		if ae.StatusCode != 200 || !ae.Retryable() || ae.AuthFailed() || ae.NotFound() || len(ae.Errors) != 1 || ae.Errors[0].Code != 0 {
			t.Errorf("APIError = %+v", ae)
		}
		if !strings.Contains(err.Error(), "giving up after 3 attempts") || !strings.Contains(ae.Body, "Just a moment") {
			t.Errorf("err = %v, body %q", err, ae.Body)
		}
		if strings.Contains(err.Error(), testToken) {
			t.Errorf("the error shows the token: %v", err)
		}
		if got := fx.stats(t).Requests[cfapitest.EndpointGetSettings][200]; got != 3 {
			t.Errorf("%d requests, want 3", got)
		}
	})
	t.Run("a write answered by a page is retried and lands once", func(t *testing.T) {
		t.Parallel()
		fx := setupWith(t, cfapitest.Options{}, cfapi.Config{Retry: cfapi.RetryPolicy{MaxAttempts: 4}})
		fx.seed(t, dispatchNS, 1)
		fx.srv.AnswerPageNext(1, cfapitest.EndpointPatchSettings)
		kv := wire.MustParseBinding(`{"type":"plain_text","name":"ADDED","text":"v"}`)
		if _, err := fx.client.PatchSettings(context.Background(), ref, cfapi.SettingsPatch{Bindings: wire.Bindings{kv}}); err != nil {
			t.Fatalf("PatchSettings after a page: %v", err)
		}
		s, err := fx.client.GetSettings(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, b := range s.Bindings {
			if b.Name() == "ADDED" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d bindings ADDED after the retried write, want 1: %v", n, s.Bindings)
		}
		if got := fx.stats(t).Requests[cfapitest.EndpointPatchSettings][200]; got != 2 {
			t.Errorf("%d PATCH requests, want 2 (the page, then the API)", got)
		}
	})
}
