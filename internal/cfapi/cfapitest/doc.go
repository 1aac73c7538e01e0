// Package cfapitest is an in-process emulator of the Cloudflare Workers API
// for the bindings reconciler's tests.
package cfapitest

// DefaultAccount is the account id the wrangler captures use.
const DefaultAccount = "023e105f4ecef8ad9ca31a8372d0c353"
