// Package planner is the reconciler's pure core: it validates a script's
// desired bindings, diffs them three ways (desired, live, last applied),
// chooses the cheapest write that expresses the difference and renders the
// plan for people. It does no I/O and keeps no state besides the
// fingerprint key: no context, no clock, no globals. It imports only the
// standard library and the binding model of internal/cfapi.
//
// # Contract
//
// Planner.Plan(desired, live, lastApplied) returns a *Plan: one Action per
// binding name, sorted by name; the Strategy of the write (StrategyNone when
// there is nothing to write); the Request, which is the complete binding
// set to send; NeedsParts, the multipart parts a script upload must carry;
// and Applied, the last-applied record to store once the write has
// succeeded. Every error is permanent (the same input fails the same way):
// a *wire.ValidationError for invalid desired state, a *Error for desired
// state the live state cannot satisfy. Validate(desired) checks desired
// state alone, as Plan does first; it needs no Planner.
//
// # Rules
//
// A live binding is owned when the last-applied record lists its name with
// its live type. For each name in desired ∪ live ∪ Remove:
//
//   - desired and live: a secret (secret_text, secret_key) is kept when the
//     live type is the same and the record holds the same type and the
//     fingerprint of the desired value; otherwise it is rewritten ("new
//     secret value", "not applied by the reconciler before", "type
//     changed"). Any other binding is kept when wire.Binding.Matches
//     (normalized comparison) holds, else updated.
//   - desired, not live: added (reason "missing from live" when the record
//     lists it: drift).
//   - in Remove: removed if live, whoever created it; no action if not live.
//   - live only: owned and Exclusive (a replace was folded) → removed;
//     owned and not Exclusive → kept; not owned → "unowned", left alone.
//   - desired {"type":"inherit","name":N}: keeps the live binding N (an
//     error if there is none). With "old_name":O it renames: while O is
//     live, N is added (or updated) from O and O is removed, which only a
//     script upload can express; once O is gone and N is live, N is kept.
//     version_id other than "latest" is rejected.
//
// Names that are only in the record produce no action and leave the record.
//
// # Writes
//
// With nothing to add, update or remove, the strategy is StrategyNone and
// the request is zero. Otherwise the requested strategy is used, or with
// StrategyAuto: StrategyScript when an added or updated binding is a part
// type (wasm_module, text_blob, data_blob) or a rename, else
// StrategySettings. Requesting StrategySettings for such a change is an
// error naming the binding.
//
// The request holds the full new set, sorted by name. Added and updated
// bindings are sent in full (secrets with their text). With settings, every
// other binding that stays is sent as {type, name}, which keeps its current
// value; a live binding's JSON is never sent back. With script or version,
// it is sent as {"type":"inherit","name":…}. A script upload carries
// secrets over by KeepBindings instead: secret_text and secret_key, each
// listed unless a binding of that type is removed or changes type (it
// would otherwise come back). A version inherits secrets by name too and
// has no KeepBindings, so every binding it keeps can be pinned to one
// version. Plan.As rebuilds the request for another strategy.
//
// The new record holds every desired name with its type and the
// fingerprint of its desired value (for an inherit: of the live binding it
// keeps, under its new name), plus the owned bindings that stay untouched
// with their old record. A binding that is kept and already recorded with
// its type keeps its record as it is: nothing was written (for a secret the
// fingerprint is the same by definition), and only written values cost an
// HMAC. Removed and unowned names are not in the record; neither are names
// that are only in the old record.
//
// # Invariants
//
//   - An unowned binding is never removed unless Remove names it (or a
//     desired inherit renames it).
//   - Applying the request as the API does and planning again, with the
//     new live state and Plan.Applied as the record, gives a no-op.
//   - Equal inputs give byte-identical requests (the settings body that
//     cfapi.SettingsPatch.JSON makes of Request.Bindings), Render and
//     MarshalJSON output, whatever the order of the input lists.
//   - No error, Render, String or MarshalJSON output (of a Plan, an Action
//     or a Request) holds a value of a binding that is not known to be
//     non-secret: wire.RedactJSON's rule decides, so write-only types and
//     unknown types alike read "(sensitive)". Only Request.Bindings holds
//     secrets, for the write itself.
//   - Fingerprints are HMAC-SHA256 under the planner's key, truncated to
//     FingerprintLen hex digits; the record never holds plaintext.
//   - Plan parses no JSON except to read the old_name of inherit bindings,
//     the part of part-type bindings it sends, and a renamed binding under
//     its new name (for its fingerprint); Before/After values are computed
//     only by Detailed, Render and MarshalJSON.
package planner
