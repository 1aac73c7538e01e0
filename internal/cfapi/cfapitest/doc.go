// Package cfapitest is an in-process emulator of the Cloudflare Workers API:
// the endpoints the bindings reconciler reads and writes, with the binding
// semantics, error envelope, rate limit and failures of the real API, plus
// fault injection and counters for tests.
//
// # Contract
//
// New returns a Server, an http.Handler serving under Options.Prefix
// ("/client/v4" by default); NewTestServer runs one on a loopback port for a
// test and ListenAndServe serves one for the emulator command. The base URL
// a client is given ends in the prefix. State lives in memory behind one
// mutex; the Server is safe for concurrent use and holds no global state.
// Every 32-lowercase-hex id is an account. Namespace "" means an ordinary
// (account-level) Worker in every Go method of this package.
//
// Endpoints (names as in Stats and the client's metrics; {a} is
// /accounts/{account_id}, D is {a}/workers/dispatch/namespaces/{ns}/scripts/{s},
// O is {a}/workers/scripts/{s}):
//
//	get_settings      GET   D/settings, O/settings
//	get_bindings      GET   D/bindings (no ordinary route: 404 7000, as the real API)
//	patch_settings    PATCH D/settings, O/settings (multipart, part "settings")
//	get_content       GET   D/content, O/content/v2 (multipart, main module first, cf-entrypoint)
//	put_script        PUT   D, O (multipart upload; creates the script)
//	post_version      POST  D/versions, O/versions (multipart; script must exist)
//	post_deployment   POST  D/deployments, O/deployments (JSON)
//	list_scripts      GET   {a}/workers/dispatch/namespaces/{ns}/scripts (limit, cursor, tags)
//	get_script        GET   D (script details)
//	create_namespace  POST  {a}/workers/dispatch/namespaces
//	list_namespaces   GET   {a}/workers/dispatch/namespaces
//	get_namespace     GET   {a}/workers/dispatch/namespaces/{ns}
//	unknown           anything else
//
// Binding semantics are the exported pure functions ApplySettingsPatch,
// ApplyUpload and RenderForGet, which the handlers use, so other packages
// can apply requests "as the emulator would" without HTTP.
//
// A request passes, in order: Latency, the rate limit, auth, FailNext rules,
// random faults, routing (404/405), the account check, and for script
// writes the in-flight tracking and WriteLatency; then its handler.
//
// # Emulated as the real API behaves (cloudflare-api-facts.md, wrangler captures)
//
//   - The envelope {success, errors[{code,message}], messages, result} on
//     every JSON answer, result_info on lists, a cf-ray header ("<hex>-EMU").
//   - GET shows bindings without write-only values (secret_text text,
//     secret_key key_base64/key_jwk), json as a JSON value, service
//     environment "production", ai_search namespace "default", d1 "id" as
//     "database_id", a server-filled durable_object_namespace namespace_id,
//     never inherit, and in an order unrelated to upload order.
//   - A PUT or version upload replaces the whole binding set; keep_bindings
//     carries types over; inherit resolves against the latest version (or
//     version_id), renames with old_name, is dropped silently when
//     unresolvable unless bindings_inherit=strict (then 400 10057, one error
//     entry per binding). Secrets re-sent without text are 10021 "invalid or
//     missing text property for binding X".
//   - A settings PATCH takes the full binding set; {type,name} keeps the
//     current value; a missing "settings" part is 400 10201. Other members
//     replace the stored ones, absent members stay.
//   - The metadata part is accepted as a plain field, an application/json
//     part or a metadata.json file; module parts match main_module,
//     body_part and part bindings by part name or filename.
//   - A version upload requires main_module and changes nothing live until
//     a deployment (1 or 2 versions, shares summing to 100) includes it.
//   - Not found: 10007 "This Worker does not exist on your account." for
//     ordinary scripts, 10092 for dispatch scripts (wrangler requires it).
//   - Rate limit: 429 code 971 "Please wait and consider throttling your
//     request speed" with Retry-After in whole seconds (rounded up); Ratelimit
//     and Ratelimit-Policy headers on every answer while a limit is set. Two
//     modes: fixed windows (Options.RateLimit/RateWindow, SetRateLimit),
//     where requests beyond the budget are refused until the window ends;
//     and, like the real API, a strict sliding window (Options.RateSliding,
//     SetSlidingRateLimit): a request that would make more than RateLimit
//     accepted requests within any RateWindow blocks the token for RateBlock
//     (default RateWindow; five minutes on the real API), and every request
//     is refused until the block ends. Refused requests do not count.
//   - Unknown routes: 7000 "No route for that URI". Binding limits: 10052
//     (no name), 10054 (value over 5 KiB), 10027 (script over
//     MaxScriptSize), at most 8 tags. Unknown binding types are stored and
//     returned unchanged.
//
// # Guesses (not documented; chosen to be plausible)
//
//   - Invalid account id: 404 with errors [7003 "Could not route to …,
//     perhaps your object identifier is invalid?", 7000 "No route for that
//     URI"]. The codes and wording are the real API's; the status may differ.
//   - Auth failure (missing or wrong token, email/key): 403 code 10000
//     "Authentication error" (the real API also uses 9106 for unknown tokens).
//   - Wrong method on a known path: 405 code 10000 "<METHOD> method not
//     allowed for the api_token authentication scheme", with Allow.
//   - Dispatch namespace missing: 404 10092. Namespace exists on create:
//     409 code 10118. Invalid namespace name, list limit outside 1..1000,
//     bad cursor, bad deployment, bad settings member: 400 10021.
//   - Body not multipart (PUT, versions, PATCH) or invalid JSON
//     (deployments, namespaces): 400 10026. Metadata missing or not JSON:
//     400 10021 "could not read content for part metadata".
//   - Concurrent writes to one script (Options.RejectOverlappingWrites):
//     409 10035 "Multiple attempts to modify a resource at the same time".
//   - A settings PATCH creates a new version and deploys it at 100%; inherit
//     entries and new part-type bindings are refused in a PATCH (10021).
//   - A split deployment makes the version with the larger share live (the
//     first listed on a tie); the emulator has one live state per script.
//   - The list cursor is in result_info.cursor, "" after the last page; a
//     tag filter item without ":yes"/":no" means ":yes".
//   - GET settings omits compatibility_date when it was never set and shows
//     the captured defaults for the other members (flags [], limits {},
//     logpush false, observability null, placement {}, tags [],
//     tail_consumers null, usage_model "standard").
//   - Service-worker content is answered as multipart too, the body part
//     first.
//
// # Faults
//
// Faults (at construction or SetFaults) fail a fraction of requests with
// 500/502/503 code 10013 "workers.api.error.unknown", 429 code 971 with
// Retry-After: 1, or a connection reset (a TCP RST after hijacking), drawn
// from a source seeded by Options.Seed; Latency delays every request and
// WriteLatency every script write while it is marked in flight. FailNext
// fails the next n requests (optionally of some endpoints) deterministically.
// Note that Go's http.Transport transparently retries an idempotent request
// (GET) that was reset on a reused connection.
//
// # Observability
//
// Stats counts requests by endpoint and status (0 = no answer), reads,
// write attempts, 429s (all of them, and those of the rate limit with the
// blocks it started), injected faults and overlapping writes to one script,
// and keeps every arrival time for MaxRequestsInWindow. RequestLog
// lists finished requests. Bindings and Script return the stored state,
// secrets included, for assertions; Seed creates deterministic tenants.
package cfapitest

// DefaultAccount is the account id the wrangler captures use.
const DefaultAccount = "023e105f4ecef8ad9ca31a8372d0c353"
