package cfapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Settings is a script's configuration as GET …/settings returns it: the
// bindings, and every other member (compatibility_date, limits, placement,
// tags, ...) kept as raw JSON so a script upload can send them back.
type Settings struct {
	Bindings wire.Bindings
	Other    map[string]json.RawMessage
}

// UnmarshalJSON splits the bindings from the other members.
func (s *Settings) UnmarshalJSON(data []byte) error {
	ms, err := wire.ObjectMembers(data)
	if err != nil {
		var m map[string]json.RawMessage
		if uerr := json.Unmarshal(data, &m); uerr != nil {
			return uerr // encoding/json's precise message
		}
		return err
	}
	m := make(map[string]json.RawMessage, len(ms))
	for _, mb := range ms {
		m[mb.Key] = bytes.Clone(mb.Value)
	}
	s.Bindings = nil
	if raw, ok := m["bindings"]; ok && string(raw) != "null" {
		if s.Bindings, err = wire.ParseBindingArray(raw); err != nil {
			return fmt.Errorf("bindings: %w", err)
		}
	}
	delete(m, "bindings")
	s.Other = m
	return nil
}

// MarshalJSON writes the bindings and the other members with sorted keys.
func (s Settings) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(s.Other)+1)
	for k, v := range s.Other {
		m[k] = v
	}
	bs := s.Bindings
	if bs == nil {
		bs = wire.Bindings{}
	}
	m["bindings"] = bs
	return json.Marshal(m)
}

// GetSettings reads a script's bindings and configuration
// (GET …/scripts/{script}/settings, both flavours).
func (c *Client) GetSettings(ctx context.Context, ref ScriptRef) (*Settings, error) {
	var s Settings
	if err := c.doJSON(ctx, call{endpoint: EPGetSettings, method: "GET", path: ref.scriptPath() + "/settings"}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SettingsPatch is the body of a settings PATCH. Bindings, when non-nil, is
// the full new binding set: an entry of only {type, name} (see Ref) keeps
// that binding's current value. Other members (compatibility_date, ...)
// replace the current ones; absent members are left unchanged.
type SettingsPatch struct {
	Bindings wire.Bindings
	Other    map[string]json.RawMessage
}

// JSON returns the body of the settings part, as PatchSettings sends it:
// "bindings" first (each binding's JSON byte for byte; absent when Bindings
// is nil), then the other members with sorted keys. It holds secret values:
// send it, never log it.
func (p SettingsPatch) JSON() ([]byte, error) {
	w := wire.NewObject(nil, true)
	if p.Bindings != nil {
		if err := w.Bindings("bindings", p.Bindings); err != nil {
			return nil, fmt.Errorf("settings patch: %w", err)
		}
	}
	for _, k := range wire.SortedKeys(p.Other, "bindings") {
		if err := w.CheckedRaw(k, p.Other[k]); err != nil {
			return nil, fmt.Errorf("settings patch: %w", err)
		}
	}
	return w.Close(), nil
}

// PatchSettings changes bindings and configuration without uploading code:
// PATCH …/settings with one multipart part named "settings" holding JSON.
func (c *Client) PatchSettings(ctx context.Context, ref ScriptRef, p SettingsPatch) (*Settings, error) {
	js, err := p.JSON()
	if err != nil {
		return nil, err
	}
	var s Settings
	err = c.doJSON(ctx, call{
		endpoint: EPPatchSettings, method: "PATCH", path: ref.scriptPath() + "/settings", write: true, noResult: true,
		body: formBody([]formPart{{name: "settings", contentType: "application/json", data: js}}),
	}, &s)
	if err != nil {
		return nil, err
	}
	return &s, nil
}
