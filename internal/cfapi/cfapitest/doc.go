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
// Fault injection is the Server's Inject field (an Injector): random
// faults, the next requests' failures and pages, and the faults aimed at
// one script or one account. The Server keeps SetFaults, FailNext and
// AnswerPageNext as shorthands of Inject's.
//
// Inside, the Server is a few small parts: store (the namespaces and
// scripts behind one mutex, the options, the clock and the seeded random
// source), one handler type per API area holding a pointer to the store
// (settingsAPI, scriptsAPI, namespacesAPI, secretsAPI, wranglerAPI,
// betaAPI, userAPI), the Injector, rateLimit (the window and the other
// tool spending it) and statsRecorder. No type has more than 25 methods.
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
//	delete_script     DELETE D, O (?force accepted)
//	create_namespace  POST  {a}/workers/dispatch/namespaces
//	list_namespaces   GET   {a}/workers/dispatch/namespaces
//	get_namespace     GET   {a}/workers/dispatch/namespaces/{ns}
//
// What wrangler 4.x calls besides the uploads (wrangler.go), and the beta
// Workers API (beta.go; W is {a}/workers/workers/{worker}, {worker} a name
// or id, ordinary Workers only):
//
//	get_service            GET    {a}/workers/services/{s}
//	list_secrets           GET    D/secrets, O/secrets
//	get_secret             GET    D/secrets/{name}, O/secrets/{name}
//	put_secret             PUT    D/secrets, O/secrets (JSON {name, text, type})
//	delete_secret          DELETE D/secrets/{name}, O/secrets/{name}
//	patch_secrets          PATCH  D/secrets-bulk, O/secrets-bulk (merge patch)
//	list_deployments       GET    D/deployments, O/deployments
//	list_versions          GET    D/versions, O/versions (page, per_page, deployable)
//	get_version            GET    D/versions/{id}, O/versions/{id}
//	get_script_settings    GET    O/script-settings
//	patch_script_settings  PATCH  O/script-settings (JSON)
//	get_subdomain          GET    {a}/workers/subdomain
//	get_script_subdomain   GET    O/subdomain
//	post_script_subdomain  POST   O/subdomain
//	get_r2_bucket          GET    {a}/r2/buckets/{bucket}
//	get_worker             GET    W
//	create_worker_version  POST   W/versions[?deploy=true] (JSON, modules in base64)
//	list_worker_versions   GET    W/versions (page, per_page)
//	get_worker_version     GET    W/versions/{id}[?include=modules] ({id} may be "latest")
//	unknown                anything else
//
// Sources of the answers' shapes: services, secrets, deployments,
// versions/{id}, the subdomains, workers/workers/{n}, script-settings, the
// R2 bucket and the secret writes follow the wrangler 4.164 captures
// (reference/wrangler-captures: what wrangler sends and reads) and the
// Cloudflare SDK types they mirror (ScriptVersion, Deployment, subdomain
// {enabled, previews_enabled}, Bucket, secret {name, type}); the beta
// Workers API follows the API reference "Create Version"
// (reference/seeds/api-create-version.txt) and the facts sheet ("Beta JSON
// API"); codes 10090, 10092, 10007, 10057, 10214 and 10215 are those
// wrangler checks (its deploy and secret commands) or users report
// (workers-sdk #10585, #12392).
//
// Binding semantics are the exported pure functions ApplySettingsPatch,
// ApplyUpload and RenderForGet, which the handlers use, so other packages
// can apply requests "as the emulator would" without HTTP.
//
// A request passes, in order: Latency, the rate limit, auth, FailNext rules,
// random faults, routing (404/405), the account check, and for script
// writes the in-flight tracking and WriteLatency; then its handler.
//
// # Emulated as the real API behaves (docs/emulator.md)
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
//     GET …/deployments lists the ten newest deployments, newest (active)
//     first; versions keep their own bindings, so the two versions of a
//     split stay as uploaded.
//   - A settings PATCH and a secret edit (PUT or DELETE …/secrets, PATCH
//     …/secrets-bulk) create a new version from the latest version and
//     deploy it at 100%. When the latest version is not in the current
//     deployment they are refused with 400 10214 (settings: "Script edit
//     failed. You attempted to deploy the latest version with modified
//     settings, but the latest version isn't currently deployed. …", the
//     text of workers-sdk #12392) or 10215 (secrets). PATCH
//     …/script-settings changes the non-versioned settings (logpush,
//     observability, tags, tail_consumers) without a version.
//   - The beta Workers API creates a version from JSON: modules decoded from
//     content_base64, main_module among them, bindings resolved as in a
//     version upload with bindings_inherit=strict (inherit against the
//     latest version or version_id, old_name renames, an unresolvable
//     inherit is 400 10057 with one entry per binding), workers/message cut
//     to 1000 bytes; ?deploy=true deploys it at 100% in the same request.
//   - GET …/workers/services/{s} of a missing Worker is 404 10090
//     "workers.api.error.service_not_found" (wrangler reads it as "new").
//   - Every write moves the script's modified_on (uploads, versions,
//     deployments, settings, script-settings, secrets, subdomain).
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
//   - A settings PATCH takes inherit entries and part bindings that name
//     one of the script's modules, as the API reference lists them; a part
//     it does not have is 10021.
//   - A settings PATCH or a secret edit while the latest version shares a
//     split deployment (Options.SplitEdits) is undocumented. The default,
//     SplitEditCollapse, is the worst case for a caller: the new version is
//     built on the latest one and deployed at 100%, so the split is gone.
//     SplitEditReject answers 10214/10215 as when the latest version is not
//     deployed. The status of 10214/10215 (400) is a guess too.
//   - Wrangler's preflights for what the emulator does not model: every R2
//     bucket exists (GET {a}/r2/buckets/{b} is 200 {name, creation_date,
//     location "ENAM", storage_class "Standard"}); every account's
//     workers.dev subdomain is "reconciler-emulator"; a new script is off
//     the workers.dev subdomain until POST …/subdomain, whose
//     previews_enabled follows enabled unless given. Routes and custom
//     domains are not served (wrangler calls them only when configured).
//   - "source" of versions and deployments and "last_deployed_from" are
//     "wrangler" for a request whose User-Agent starts with "wrangler",
//     "api" otherwise (never "dash", which makes wrangler diff the
//     config). "workers/triggered_by" is "upload" for script and version
//     uploads and "secret" for secret edits (values wrangler knows), unset
//     otherwise. author_email is "".
//   - A secret put over a binding of another type replaces it. A missing
//     secret (GET or DELETE …/secrets/{name}) is 404 10056; a missing
//     version 404 10007; PUT …/secrets without "type" means secret_text.
//     The secrets-bulk answer lists every secret after the patch.
//   - The beta API: a missing Worker is 404 10007; the versioned settings
//     (compatibility_date, compatibility_flags, limits, placement,
//     usage_model) are exactly the body's, absent means unset; workers/tag
//     over 100 bytes is 400 10021; members it does not model (assets,
//     containers, exports, ...) are accepted and ignored; the POST answer
//     has no modules; pages of list_worker_versions default to 20 and of
//     list_versions to 10.
//   - A split deployment makes the version with the larger share live (the
//     first listed on a tie); the emulator has one live state per script.
//   - The list cursor is in result_info.cursor, "" after the last page; a
//     tag filter item without ":yes"/":no" means ":yes".
//   - GET settings omits compatibility_date and placement when they were
//     never set and shows the captured defaults for the other members
//     (flags [], limits {}, logpush false, observability null, tags [],
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
// fails the next n requests (optionally of some endpoints) deterministically,
// AnswerPageNext answers them 200 with an HTML page; FailNextFor and
// AnswerPageNextFor count only the requests about one script. RefuseRemoval
// refuses (400 10021) every write that would drop a named binding of a
// script.
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
// secrets included, for assertions; Seed creates deterministic tenants;
// AddVersion and Deploy make versions and (split) deployments directly.
package cfapitest

// DefaultAccount is the account id the wrangler captures use.
const DefaultAccount = "023e105f4ecef8ad9ca31a8372d0c353"
