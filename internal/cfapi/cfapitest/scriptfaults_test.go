package cfapitest

import (
	"net/http"
	"strings"
	"testing"
)

// TestFaultsForOneScript: FailNextFor and AnswerPageNextFor count only the
// requests about their script; other scripts are served meanwhile.
func TestFaultsForOneScript(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "w", plainGr)
	seedScript(t, s, "", "other", plainGr)
	s.Inject.FailNextFor("w", 2, http.StatusServiceUnavailable, CodeUnknown, EndpointGetSettings)
	s.Inject.AnswerPageNextFor("w", 1, EndpointGetSettings)
	for range 3 {
		expect(t, a.get(scriptPath("", "other")+"/settings"), http.StatusOK, 0)
	}
	for range 2 {
		expect(t, a.get(scriptPath("", "w")+"/settings"), http.StatusServiceUnavailable, CodeUnknown)
	}
	r, err := a.send(http.MethodGet, scriptPath("", "w")+"/settings", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("third request: %d %s, want the HTML page", r.Status, r.Header.Get("Content-Type"))
	}
	expect(t, a.get(scriptPath("", "w")+"/settings"), http.StatusOK, 0)
}

// TestRefuseRemoval: a write that would drop the named binding is refused
// with 10021 naming it and changes nothing; a write that keeps it, or a
// script without it, is applied.
func TestRefuseRemoval(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "w", plainGr, `{"type":"plain_text","name":"STUCK","text":"1"}`)
	s.Inject.RefuseRemoval(acct, "", "w", "STUCK")
	path := scriptPath("", "w") + "/settings"
	drop, ct := settingsPatch(t, map[string]any{"bindings": []any{map[string]any{"type": "plain_text", "name": "GREETING", "text": "hi"}}})
	r := a.do(http.MethodPatch, path, drop, ct)
	expect(t, r, http.StatusBadRequest, CodeValidation)
	if !strings.Contains(r.Env.Errors[0].Message, "STUCK") {
		t.Errorf("message %q does not name the binding", r.Env.Errors[0].Message)
	}
	if _, ok := storedByName(t, s, "", "w")["STUCK"]; !ok {
		t.Fatal("the refused write removed STUCK")
	}
	keep, ct := settingsPatch(t, map[string]any{"bindings": []any{map[string]any{"type": "plain_text", "name": "GREETING", "text": "hi"},
		map[string]any{"type": "plain_text", "name": "STUCK", "text": "2"}}})
	expect(t, a.do(http.MethodPatch, path, keep, ct), http.StatusOK, 0)
	if got := storedByName(t, s, "", "w"); len(got) != 2 {
		t.Fatalf("after a write keeping STUCK: %v", got)
	}
}
