package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
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
	p.render(&buf, RenderOptions{LeftAlone: true})
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
func (p *Plan) Render(w io.Writer) error { return p.RenderWith(w, RenderOptions{LeftAlone: true}) }

// RenderOptions choose what Render shows.
type RenderOptions struct {
	// LeftAlone shows a line per binding left alone (created outside the
	// reconciler); the summary line counts them either way.
	LeftAlone bool
}

// RenderWith is Render with options.
func (p *Plan) RenderWith(w io.Writer, o RenderOptions) error {
	var buf bytes.Buffer
	p.render(&buf, o)
	_, err := w.Write(buf.Bytes())
	return err
}

func (p *Plan) render(buf *bytes.Buffer, o RenderOptions) {
	s := p.Summary()
	if p.NoOp() {
		fmt.Fprintf(buf, "No changes. %d unchanged, %d left alone.\n", s.Keep, s.Unowned)
		return
	}
	for i := range p.Actions {
		if a := &p.Actions[i]; a.Kind != ActionKeep && (o.LeftAlone || a.Kind != ActionUnowned) {
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
		case a.OldType != "" && !a.desired.Sensitive():
			if f := fieldsText(a.desired); f != "" {
				buf.WriteString("  ")
				buf.WriteString(f)
			}
		case a.desired.Sensitive() || a.live.Sensitive():
			buf.WriteString(": " + Sensitive)
			if a.Reason != ReasonTypeChanged {
				reason()
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

// redact returns b's JSON object as plans show it: redacted by cfapi's one
// rule (wire.RedactJSON), every value of a binding not known to be
// non-secret reading "(sensitive)"; nil for the zero Binding.
func redact(bp *wire.Binding) json.RawMessage {
	if bp == nil || bp.IsZero() {
		return nil
	}
	if !bp.Sensitive() {
		return slices.Clone(bp.Raw())
	}
	out, ok := wire.RedactJSONWith(bp.Raw(), Sensitive)
	if !ok {
		return nil
	}
	return out
}

// fieldsText renders b's members other than type and name as key=value
// pairs; every value of a sensitive binding (wire.Binding.Sensitive) reads
// (sensitive).
func fieldsText(b *wire.Binding) string {
	hidden := b.Sensitive()
	ms, _ := wire.ObjectMembers(b.Raw())
	var sb strings.Builder
	for _, m := range ms {
		if m.Key == "type" || m.Key == "name" {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(m.Key)
		sb.WriteByte('=')
		if hidden {
			sb.WriteString(Sensitive)
		} else {
			sb.WriteString(cfapi.Truncate(string(m.Value), maxShownValue))
		}
	}
	return sb.String()
}

// diffText renders the normalized members that differ between the live and
// the desired binding of one type (never a write-only type):
// `"1" → "2"` when the binding has that one member, else
// `key: old → new, …` with (unset) for a missing member.
func diffText(live, desired *wire.Binding) string {
	lm, _ := wire.ObjectMembers([]byte(live.NormalizedValue()))
	dm, _ := wire.ObjectMembers([]byte(desired.NormalizedValue()))
	var parts []string
	i, j := 0, 0
	for i < len(lm) || j < len(dm) {
		var key, old, nw string
		switch {
		case j == len(dm) || (i < len(lm) && lm[i].Key < dm[j].Key):
			key, old, nw = lm[i].Key, string(lm[i].Value), "(unset)"
			i++
		case i == len(lm) || dm[j].Key < lm[i].Key:
			key, old, nw = dm[j].Key, "(unset)", string(dm[j].Value)
			j++
		default:
			key, old, nw = lm[i].Key, string(lm[i].Value), string(dm[j].Value)
			i++
			j++
			if old == nw {
				continue
			}
		}
		parts = append(parts, key+": "+cfapi.Truncate(old, maxShownValue)+" → "+cfapi.Truncate(nw, maxShownValue))
	}
	if len(parts) == 1 && len(lm) == 1 && len(dm) == 1 && lm[0].Key == dm[0].Key {
		return cfapi.Truncate(string(lm[0].Value), maxShownValue) + " → " + cfapi.Truncate(string(dm[0].Value), maxShownValue)
	}
	if len(parts) == 0 {
		return "(no visible difference)"
	}
	return strings.Join(parts, ", ")
}
