// Package sandbox is the parts of `reconciler sandbox` and `reconciler
// emulator` that are not the pipeline's wiring: the sandbox's default
// settings (Env), the API emulator seeded with tenants on a free port,
// the demo's patch, the live events published during the demo backfill
// and how long each took to be applied, the demo's report, and the
// standalone emulator's setup and announcement (ServeEmulator).
//
// It imports internal/cfapi/cfapitest (the emulator), internal/jobs/tools
// (publishing) and internal/clihelp (usage errors); only cmd/reconciler
// imports it.
package sandbox
