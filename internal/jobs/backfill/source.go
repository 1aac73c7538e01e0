package backfill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// Source produces the items of a run: the events of a file, or a patch
// applied to every script of a dispatch namespace.
type Source struct {
	// Describe says where the items come from, for the run record.
	Describe string
	// Hash is a digest of the input; DefaultRunID derives from it.
	Hash string
	// RunID is the id the items' events carry (a namespace run's patch
	// events); it starts as DefaultRunID and the caller may set another.
	RunID string
	each  func(ctx context.Context, s *Source, fn func(Item) error, bad func(where string, err error)) error
}

// DefaultRunID is the run id of an input when none is given: "bf-" and
// the first 12 hex digits of its digest, the same for the same input.
func (s *Source) DefaultRunID() string { return "bf-" + s.Hash[:12] }

// Each calls fn with every valid item. Invalid input is reported to bad
// with its position (a file and line number) and the items after it are
// produced; an error of fn, or of the listing, stops it.
func (s *Source) Each(ctx context.Context, fn func(Item) error, bad func(where string, err error)) error {
	return s.each(ctx, s, fn, bad)
}

// EventsSource is the source of a JSON-lines file of events (one per
// script, docs/events.md) named name in messages; prefix is the event
// subject prefix the events are checked against.
func EventsSource(name string, data []byte, prefix string) *Source {
	sum := sha256.Sum256(data)
	s := &Source{Describe: "file " + name, Hash: hex.EncodeToString(sum[:]),
		each: func(ctx context.Context, _ *Source, fn func(Item) error, bad func(string, error)) error {
			return eachEventLine(name, data, prefix, fn, bad)
		}}
	s.RunID = s.DefaultRunID()
	return s
}

// Lister lists the scripts of a dispatch namespace (*cfapi.Client).
type Lister interface {
	EachScript(ctx context.Context, account, namespace string, opts cfapi.ListScriptsOptions, fn func(cfapi.ScriptInfo) error) error
}

// Namespace is a namespace run's input: Patch (a JSON object with
// "upsert" and/or "remove", as in a patch event) applied to every script
// of Account/Namespace that has every tag of Tags.
type Namespace struct {
	Account, Namespace string
	Tags               []string
	Patch              []byte
	// SubjectPrefix is the event subject prefix the patch is checked
	// against.
	SubjectPrefix string
	// SkipUnmodified is only reported, in the fallback's warning.
	SkipUnmodified bool
	// Lister lists the namespace; Known finds its scripts when the API
	// does not serve the list (nil: no pipeline state reachable).
	Lister Lister
	Known  KnownScriptsFunc
	Log    *zap.Logger
}

// NamespaceSource checks the patch (as the pipeline will, before any
// listing) and returns the source of the run. Its errors describe the
// patch and are meant to follow the flag or file that gave it.
func NamespaceSource(ns Namespace) (*Source, error) {
	var p struct {
		Upsert []json.RawMessage `json:"upsert"`
		Remove []string          `json:"remove"`
	}
	dec := json.NewDecoder(bytes.NewReader(ns.Patch))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("want a JSON object with \"upsert\" and/or \"remove\": %w", err)
	}
	if p.Upsert == nil && p.Remove == nil {
		return nil, errors.New("needs \"upsert\" or \"remove\"")
	}
	if ns.Log == nil {
		ns.Log = zap.NewNop()
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", ns.Account, ns.Namespace, strings.Join(ns.Tags, ","))
	h.Write(ns.Patch)
	s := &Source{Describe: fmt.Sprintf("namespace %s/%s tags %v", ns.Account, ns.Namespace, ns.Tags), Hash: hex.EncodeToString(h.Sum(nil))}
	s.RunID = s.DefaultRunID()
	probe := PatchEvent(cfapi.ScriptRef{AccountID: ns.Account, Namespace: ns.Namespace, Script: "probe"}, p.Upsert, p.Remove, s.RunID)
	if _, err := event.DecodeEvent(probe, "", ns.SubjectPrefix); err != nil {
		return nil, err
	}
	s.each = func(ctx context.Context, s *Source, fn func(Item) error, _ func(string, error)) error {
		opts := cfapi.ListScriptsOptions{Tags: NormalizeTags(ns.Tags), Limit: cfapi.MaxListLimit}
		emitted := map[string]bool{}
		err := ns.Lister.EachScript(ctx, ns.Account, ns.Namespace, opts, func(si cfapi.ScriptInfo) error {
			ref := cfapi.ScriptRef{AccountID: ns.Account, Namespace: ns.Namespace, Script: si.ID}
			emitted[event.ScriptKey(ref)] = true
			return fn(Item{Ref: ref, Event: PatchEvent(ref, p.Upsert, p.Remove, s.RunID), ModifiedOn: si.ModifiedOn})
		})
		if cfapi.IsListUnsupported(err) {
			return ns.eachKnownScript(ctx, err, emitted, func(ref cfapi.ScriptRef) error {
				return fn(Item{Ref: ref, Event: PatchEvent(ref, p.Upsert, p.Remove, s.RunID)})
			})
		}
		return explainListError(err, ns.Account, ns.Namespace)
	}
	return s, nil
}

// PatchEvent is the event a namespace run applies to one script: a patch
// without generation, so it applies as the newest operation when it is
// folded and never makes later live events stale.
func PatchEvent(ref cfapi.ScriptRef, upsert []json.RawMessage, remove []string, id string) []byte {
	ev := map[string]any{"schema": event.SchemaV1, "id": id, "account_id": ref.AccountID,
		"dispatch_namespace": ref.Namespace, "script": ref.Script, "op": event.OpPatch}
	if upsert != nil {
		ev["upsert"] = upsert
	}
	if remove != nil {
		ev["remove"] = remove
	}
	data, _ := json.Marshal(ev)
	return data
}

// NormalizeTags turns a tag filter NAME into NAME:yes.
func NormalizeTags(tags []string) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		if !strings.Contains(t, ":") {
			t += ":yes"
		}
		out[i] = t
	}
	return out
}

// explainListError turns a failed listing into a message that says what
// to check; it stops the run before anything is written.
func explainListError(err error, account, namespace string) error {
	var apiErr *cfapi.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &apiErr) && apiErr.NotFound():
		return fmt.Errorf("dispatch namespace %q does not exist in account %s (nothing was written): %w", namespace, account, err)
	case errors.As(err, &apiErr) && (apiErr.StatusCode == 401 || apiErr.StatusCode == 403):
		return fmt.Errorf("the API rejected the credentials while listing namespace %q (nothing was written); check CLOUDFLARE_API_TOKEN and its permissions: %w", namespace, err)
	}
	return fmt.Errorf("listing namespace %q (nothing was written): %w", namespace, err)
}

// eachEventLine decodes JSON-lines events, one script each. A line that
// is not one, or is longer than an event may be, is reported to bad with
// the input's name and its line number, and the lines after it are read.
func eachEventLine(name string, data []byte, prefix string, fn func(Item) error, bad func(string, error)) error {
	lr := tools.NewLineReader(bytes.NewReader(data), event.MaxEventBytes, "an event")
	seen := map[string]int{}
	for {
		raw, line, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		where := fmt.Sprintf("%s line %d", name, line)
		var tooLong *tools.TooLongError
		if errors.As(err, &tooLong) {
			tooLong.Line = 0 // where names it
			bad(where, tooLong)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] == '#' {
			continue
		}
		ev, err := event.DecodeEvent(bytes.Clone(raw), "", prefix)
		if err != nil {
			bad(where, err)
			continue
		}
		if first, dup := seen[ev.Key()]; dup {
			bad(where, fmt.Errorf("script %s is already in this run (line %d); a run holds one event per script", ev.Ref(), first))
			continue
		}
		seen[ev.Key()] = line
		if err := fn(Item{Ref: ev.Ref(), Event: bytes.Clone(raw)}); err != nil {
			return err
		}
	}
}
