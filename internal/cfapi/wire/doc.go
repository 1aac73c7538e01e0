// Package wire is the binding wire model of the Cloudflare Workers API: a
// binding as the API sends and takes it, its typed views, validation,
// normalization and canonical forms, the reconciler's one redaction rule
// and the bounds checked before any JSON document is decoded.
//
// Imports point one way: internal/cfapi (the client), the planner and the
// pipeline import wire; wire imports none of the reconciler's packages.
//
// Invariants:
//
//   - A Binding keeps its complete JSON object, so fields and types this
//     package does not know round-trip unchanged; typed views (KVNamespace,
//     R2Bucket, ...) and per-type validation exist for every documented type.
//   - Binding.Matches compares a desired binding with a live one after
//     normalizing what the API fills in or re-encodes (d1 id ≡ database_id,
//     json compared as JSON, service environment "production", ai_search
//     namespace "default", empty R2 jurisdiction, server-filled durable
//     object members), so a diff never flaps.
//   - Write-only values (secret_text text, secret_key key material) never
//     appear in errors or logs. Redaction is by default: RedactJSON (and
//     Binding.Redacted, which uses it) hides every value of a binding whose
//     type is not known to be non-secret, unknown types and case variants
//     included, and treats every element of an event's bindings or upsert
//     list as a binding even without a type; it is the one rule for dead
//     letters, plans and logs. It streams: its memory is a small multiple
//     of the document's size whatever the nesting. CheckJSONBounds bounds a
//     document's size and depth (MaxJSONDepth) in one pass before anything
//     decodes, redacts or copies it.
//   - ParseBinding accepts only valid UTF-8, so the bytes sent are the
//     bytes that were validated.
//   - ObjectWriter is the one writer of JSON whose member order matters
//     (canonical forms, wrangler's metadata order, settings bodies,
//     redacted copies); a binding is always written byte for byte.
package wire
