package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/reconciler/reconciler/internal/cfapi"
)

// Sensitive is what plans show in place of a write-only value.
const Sensitive = "(sensitive)"

// maxShownValue bounds one value in a rendered line; the JSON form has the
// whole value.
const maxShownValue = 64

// Detailed returns the plan's actions with Before (the live binding) and
// After (the desired binding) filled in, write-only values replaced by
// "(sensitive)".
func (p *Plan) Detailed() []Action {
	out := make([]Action, len(p.Actions))
	for i, a := range p.Actions {
		a.Before = redact(a.live)
		a.After = redact(a.desired)
		out[i] = a
	}
	return out
}

// Summary counts a plan's actions by kind.
type Summary struct {
	Add     int `json:"add"`
	Update  int `json:"update"`
	Remove  int `json:"remove"`
	Keep    int `json:"keep"`
	Unowned int `json:"unowned"`
}

// Summary counts the plan's actions by kind.
func (p *Plan) Summary() Summary {
	var s Summary
	for i := range p.Actions {
		switch p.Actions[i].Kind {
		case ActionAdd:
			s.Add++
		case ActionUpdate:
			s.Update++
		case ActionRemove:
			s.Remove++
		case ActionKeep:
			s.Keep++
		case ActionUnowned:
			s.Unowned++
		}
	}
	return s
}

// MarshalJSON returns the plan's stable, redacted JSON form:
//
//	{"strategy":"settings","actions":[...],"summary":{"add":1,...},
//	 "keep_bindings":[...],"needs_parts":[...]}
//
// strategy is "none" for a no-op; actions carry before and after with
// write-only values replaced by "(sensitive)". It never holds a secret.
func (p Plan) MarshalJSON() ([]byte, error) {
	actions := p.Detailed()
	return json.Marshal(struct {
		Strategy     string   `json:"strategy"`
		Actions      []Action `json:"actions"`
		Summary      Summary  `json:"summary"`
		KeepBindings []string `json:"keep_bindings,omitempty"`
		NeedsParts   []string `json:"needs_parts,omitempty"`
	}{p.Strategy.name(), actions, p.Summary(), p.Request.KeepBindings, p.NeedsParts})
}

// String returns the rendered plan (see Render).
func (p Plan) String() string {
	var buf bytes.Buffer
	p.render(&buf)
	return buf.String()
}

// Render writes the plan for people, in the manner of terraform plan: one
// line per binding that changes or is left alone, then a summary.
//
//   - kv_namespace USER_KV  namespace_id="0f2ac74b498b48028cb68387c421e279"
//     ~ plain_text VERSION: "1" → "2"
//   - r2_bucket OLD (no longer desired)
//     ~ secret_text API_KEY: (sensitive) (new secret value)
//     ! d1 THEIR_DB (left alone: created outside the reconciler)
//     Plan: 1 to add, 2 to change, 1 to remove, 3 unchanged, 1 left alone. Write: settings.
//
// A no-op renders "No changes. 3 unchanged, 1 left alone." Write-only
// values always read "(sensitive)"; long values are shortened.
func (p *Plan) Render(w io.Writer) error {
	var buf bytes.Buffer
	p.render(&buf)
	_, err := w.Write(buf.Bytes())
	return err
}

func (p *Plan) render(buf *bytes.Buffer) {
	s := p.Summary()
	if p.NoOp() {
		fmt.Fprintf(buf, "No changes. %d unchanged, %d left alone.\n", s.Keep, s.Unowned)
		return
	}
	for i := range p.Actions {
		if a := &p.Actions[i]; a.Kind != ActionKeep {
			a.renderLine(buf)
			buf.WriteByte('\n')
		}
	}
	fmt.Fprintf(buf, "Plan: %d to add, %d to change, %d to remove, %d unchanged, %d left alone. Write: %s",
		s.Add, s.Update, s.Remove, s.Keep, s.Unowned, p.Strategy.name())
	if len(p.Request.KeepBindings) > 0 {
		fmt.Fprintf(buf, " (keep_bindings: %s)", strings.Join(p.Request.KeepBindings, ", "))
	}
	if len(p.NeedsParts) > 0 {
		fmt.Fprintf(buf, " (parts: %s)", strings.Join(p.NeedsParts, ", "))
	}
	buf.WriteString(".\n")
}

// String renders the action as one line, as Render shows it (an unchanged
// binding reads "= type NAME"). It never holds a write-only value.
func (a Action) String() string {
	var buf bytes.Buffer
	a.renderLine(&buf)
	return buf.String()
}

func (a *Action) renderLine(buf *bytes.Buffer) {
	reason := func() {
		if a.Reason != "" {
			fmt.Fprintf(buf, " (%s)", a.Reason)
		}
	}
	switch a.Kind {
	case ActionAdd:
		fmt.Fprintf(buf, "+ %s %s", a.Type, a.Name)
		if !a.rename {
			if f := fieldsText(a.desired); f != "" {
				buf.WriteString("  ")
				buf.WriteString(f)
			}
		}
		reason()
	case ActionUpdate:
		fmt.Fprintf(buf, "~ %s %s", a.Type, a.Name)
		if a.OldType != "" {
			fmt.Fprintf(buf, " (was %s)", a.OldType)
		}
		switch {
		case a.rename:
			reason()
		case cfapi.IsWriteOnlyType(a.Type):
			buf.WriteString(": " + Sensitive)
			if a.Reason != ReasonTypeChanged {
				reason()
			}
		case a.OldType != "":
			if f := fieldsText(a.desired); f != "" {
				buf.WriteString("  ")
				buf.WriteString(f)
			}
		default:
			buf.WriteString(": ")
			buf.WriteString(diffText(a.live, a.desired))
		}
	case ActionRemove:
		fmt.Fprintf(buf, "- %s %s", a.Type, a.Name)
		reason()
	case ActionUnowned:
		fmt.Fprintf(buf, "! %s %s (left alone: %s)", a.Type, a.Name, a.Reason)
	default:
		fmt.Fprintf(buf, "= %s %s", a.Type, a.Name)
		if a.Reason != "" {
			reason()
		}
	}
}

// member is one member of a binding's JSON object.
type member struct {
	key string
	val json.RawMessage
}

// members decodes a JSON object into its members, in order.
func members(obj []byte) []member {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return out
		}
		out = append(out, member{key, v})
	}
	return out
}

// redact returns b's JSON object with every write-only member's value
// replaced by "(sensitive)"; nil for the zero Binding.
func redact(bp *cfapi.Binding) json.RawMessage {
	if bp == nil || bp.IsZero() {
		return nil
	}
	b := *bp
	wo := cfapi.WriteOnlyFields(b.Type())
	if len(wo) == 0 {
		return slices.Clone(b.Raw())
	}
	var out bytes.Buffer
	out.WriteByte('{')
	for i, m := range members(b.Raw()) {
		if i > 0 {
			out.WriteByte(',')
		}
		kj, _ := json.Marshal(m.key)
		out.Write(kj)
		out.WriteByte(':')
		if slices.Contains(wo, m.key) {
			out.WriteString(`"` + Sensitive + `"`)
		} else {
			out.Write(m.val)
		}
	}
	out.WriteByte('}')
	return out.Bytes()
}

// fieldsText renders b's members other than type and name as
// key=value pairs, write-only values as (sensitive).
func fieldsText(b *cfapi.Binding) string {
	wo := cfapi.WriteOnlyFields(b.Type())
	var sb strings.Builder
	for _, m := range members(b.Raw()) {
		if m.key == "type" || m.key == "name" {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(m.key)
		sb.WriteByte('=')
		if slices.Contains(wo, m.key) {
			sb.WriteString(Sensitive)
		} else {
			sb.WriteString(shorten(string(m.val)))
		}
	}
	return sb.String()
}

// diffText renders the normalized members that differ between the live and
// the desired binding of one type (never a write-only type):
// `"1" → "2"` when the binding has that one member, else
// `key: old → new, …` with (unset) for a missing member.
func diffText(live, desired *cfapi.Binding) string {
	lm := members([]byte(live.NormalizedValue()))
	dm := members([]byte(desired.NormalizedValue()))
	var parts []string
	i, j := 0, 0
	for i < len(lm) || j < len(dm) {
		var key, old, nw string
		switch {
		case j == len(dm) || (i < len(lm) && lm[i].key < dm[j].key):
			key, old, nw = lm[i].key, string(lm[i].val), "(unset)"
			i++
		case i == len(lm) || dm[j].key < lm[i].key:
			key, old, nw = dm[j].key, "(unset)", string(dm[j].val)
			j++
		default:
			key, old, nw = lm[i].key, string(lm[i].val), string(dm[j].val)
			i++
			j++
			if old == nw {
				continue
			}
		}
		parts = append(parts, key+": "+shorten(old)+" → "+shorten(nw))
	}
	if len(parts) == 1 && len(lm) == 1 && len(dm) == 1 && lm[0].key == dm[0].key {
		return shorten(string(lm[0].val)) + " → " + shorten(string(dm[0].val))
	}
	if len(parts) == 0 {
		return "(no visible difference)"
	}
	return strings.Join(parts, ", ")
}

// shorten cuts a rendered value to maxShownValue bytes on a rune boundary.
func shorten(s string) string {
	if len(s) <= maxShownValue {
		return s
	}
	cut := maxShownValue - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
