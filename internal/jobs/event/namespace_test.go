package event

import (
	"errors"
	"strings"
	"testing"
)

// TestDispatchNamespaceIsValidated: "_" (the token of ordinary Workers)
// and every other invalid dispatch namespace name is rejected as
// invalid_field naming the field and why, on its own subject and on the
// ordinary Worker's; an empty or absent one is the ordinary Worker.
func TestDispatchNamespaceIsValidated(t *testing.T) {
	const acct = "023e105f4ecef8ad9ca31a8372d0c353"
	body := func(ns string) []byte {
		return []byte(`{"schema":"bindings.change/v1","id":"e1","account_id":"` + acct + `","dispatch_namespace":"` + ns +
			`","script":"tenant-1","op":"patch","remove":["A"]}`)
	}
	for _, ns := range []string{"_", "_x", "-x", "Customers", "a.b", "a b", "a/b", strings.Repeat("a", 64)} {
		for _, subject := range []string{"bindings." + acct + "." + ns + ".tenant-1", "bindings." + acct + "._.tenant-1"} {
			_, err := DecodeEvent(body(ns), subject, "bindings")
			var ie *InvalidEventError
			if !errors.As(err, &ie) || ie.Reason != ReasonInvalidField || !strings.Contains(ie.Msg, "dispatch_namespace") {
				t.Errorf("namespace %q on %s: err = %v, want invalid_field naming dispatch_namespace", ns, subject, err)
			}
		}
	}
	for _, ns := range []string{"customers", "a", "0-tenant_ns", strings.Repeat("a", 63)} {
		if _, err := DecodeEvent(body(ns), "bindings."+acct+"."+ns+".tenant-1", "bindings"); err != nil {
			t.Errorf("namespace %q: %v", ns, err)
		}
	}
	if ev, err := DecodeEvent(body(""), "bindings."+acct+"._.tenant-1", "bindings"); err != nil || ev.DispatchNamespace != "" {
		t.Errorf("empty namespace: %v, %+v", err, ev)
	}
}
