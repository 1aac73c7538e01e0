package cfapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

func TestSettingsPatchJSON(t *testing.T) {
	mb := wire.MustParseBinding
	cases := []struct {
		name string
		p    SettingsPatch
		want string
	}{
		{"no bindings member when Bindings is nil", SettingsPatch{}, `{}`},
		// A plan that removes the last binding sends an empty, non-nil set.
		{"empty set", SettingsPatch{Bindings: wire.Bindings{}}, `{"bindings":[]}`},
		{"bindings byte for byte, secrets included",
			SettingsPatch{Bindings: wire.Bindings{mb(`{"type":"json","name":"J","json":{"b":1,"a":2}}`), mb(`{"type":"secret_text","name":"S","text":"s3cr3t-<v>"}`)}},
			`{"bindings":[{"type":"json","name":"J","json":{"b":1,"a":2}},{"type":"secret_text","name":"S","text":"s3cr3t-<v>"}]}`},
		{"other members sorted after bindings, a bindings member in Other ignored",
			SettingsPatch{Bindings: wire.Bindings{wire.Ref(wire.TypeSecretText, "S")}, Other: map[string]json.RawMessage{
				"logpush": json.RawMessage(`true`), "bindings": json.RawMessage(`[]`), "compatibility_date": json.RawMessage(`"2025-06-01"`)}},
			`{"bindings":[{"type":"secret_text","name":"S"}],"compatibility_date":"2025-06-01","logpush":true}`},
	}
	for _, c := range cases {
		got, err := c.p.JSON()
		if err != nil || string(got) != c.want {
			t.Errorf("%s: got %s, %v\nwant %s", c.name, got, err, c.want)
		}
	}
	if _, err := (SettingsPatch{Other: map[string]json.RawMessage{"limits": json.RawMessage(`{`)}}).JSON(); err == nil || !strings.Contains(err.Error(), `"limits"`) {
		t.Errorf("invalid member: %v", err)
	}
	if _, err := (SettingsPatch{Bindings: wire.Bindings{{}}}).JSON(); err == nil {
		t.Error("a zero binding was accepted")
	}
}
