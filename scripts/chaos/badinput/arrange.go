package badinput

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// writeEndpoints are the emulator's endpoints that write a script.
var writeEndpoints = []string{cfapitest.EndpointPatchSettings, cfapitest.EndpointPutScript,
	cfapitest.EndpointPostVersion, cfapitest.EndpointPostDeployment}

// Arrange makes the emulator do what c.API says about c's script in
// account. attempts is the reconciler's client's MaxAttempts: how many
// failed reads make one reconcile fail.
func (c Case) Arrange(emu *cfapitest.Server, account string, attempts int) {
	if c.API.FailFirstReconcile {
		emu.Inject.FailNextFor(c.Script, attempts, http.StatusServiceUnavailable, cfapi.CodeUnknown2, cfapitest.EndpointGetSettings)
	}
	emu.Inject.AnswerPageNextFor(c.Script, c.API.PageReads, cfapitest.EndpointGetSettings)
	emu.Inject.AnswerPageNextFor(c.Script, c.API.PageWrites, writeEndpoints...)
	if c.API.RefuseRemoval != "" {
		emu.Inject.RefuseRemoval(account, c.Namespace, c.Script, c.API.RefuseRemoval)
	}
}

// FirstReconcileFailed reports whether the emulator has failed every
// attempt of the first reconcile's read that c.API.FailFirstReconcile
// arranged (true at once for a case that arranges none).
func (c Case) FirstReconcileFailed(emu *cfapitest.Server, attempts int) bool {
	if !c.API.FailFirstReconcile {
		return true
	}
	n := 0
	for _, r := range emu.RequestLog() {
		if r.Script == c.Script && r.Namespace == c.Namespace && r.Endpoint == cfapitest.EndpointGetSettings &&
			r.Status == http.StatusServiceUnavailable {
			n++
		}
	}
	return n >= attempts
}

// SetByHand puts the bindings (raw JSON) on a live script of the emulator
// as the tenant would by hand: a new deployed version holding them,
// replacing those of the same names, every other binding kept.
func SetByHand(emu *cfapitest.Server, account, namespace, script string, raws []string) error {
	sc, ok := emu.Script(account, namespace, script)
	if !ok {
		return fmt.Errorf("script %s/%s does not exist", namespace, script)
	}
	for _, raw := range raws {
		b, err := wire.ParseBinding([]byte(raw))
		if err != nil {
			return fmt.Errorf("binding %s: %w", raw, err)
		}
		sc.Bindings = slices.DeleteFunc(sc.Bindings, func(o wire.Binding) bool { return o.Name() == b.Name() })
		sc.Bindings = append(sc.Bindings, b)
	}
	return emu.PutScript(account, namespace, script, cfapitest.Script{MainModule: sc.MainModule, BodyPart: sc.BodyPart,
		Modules: sc.Modules, Bindings: sc.Bindings, Settings: sc.Settings})
}

// StepMsgID is the Nats-Msg-Id of the i-th event (from 0) of step k (from
// 0) of c.
func (c Case) StepMsgID(k, i int) string { return fmt.Sprintf("%s-%d-%d", c.MsgID, k+1, i+1) }

// Exercised reports, as an error, an arrangement of c.API the emulator's
// request log shows was never met: the reads that were to fail did not all
// fail, the script was not asked more often than the pages it was to get,
// or no write was refused.
func (c Case) Exercised(emu *cfapitest.Server, attempts int) error {
	var reads, writes, refused int
	for _, r := range emu.RequestLog() {
		if r.Script != c.Script || r.Namespace != c.Namespace {
			continue
		}
		switch {
		case r.Endpoint == cfapitest.EndpointGetSettings:
			reads++
		case slices.Contains(writeEndpoints, r.Endpoint):
			writes++
			if r.Status == http.StatusBadRequest {
				refused++
			}
		}
	}
	switch {
	case !c.FirstReconcileFailed(emu, attempts):
		return fmt.Errorf("the first reconcile's %d reads did not all fail", attempts)
	case c.API.PageReads > 0 && reads <= c.API.PageReads:
		return fmt.Errorf("%d settings reads for %d HTML pages: none after them", reads, c.API.PageReads)
	case c.API.PageWrites > 0 && writes <= c.API.PageWrites:
		return fmt.Errorf("%d writes for %d HTML pages: none after them", writes, c.API.PageWrites)
	case c.API.RefuseRemoval != "" && refused == 0:
		return fmt.Errorf("no write was refused for removing %s", c.API.RefuseRemoval)
	}
	return nil
}
