// Package sandbox is the parts of `reconciler sandbox` that are not the
// pipeline's wiring: the API emulator seeded with tenants on a free port,
// the demo's patch, the live events published during the demo backfill
// and how long each took to be applied, and the demo's report.
//
// It imports internal/cfapi/cfapitest (the emulator) and
// internal/jobs/tools (publishing); only cmd/reconciler imports it.
package sandbox
