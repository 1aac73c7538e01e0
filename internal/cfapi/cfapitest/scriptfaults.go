package cfapitest

import (
	"net/http"
	"slices"
	"sync"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// FailNextFor is FailNext for the requests about one script (its name,
// in any account and namespace): the next n of them (to the endpoints,
// when given) fail with the status and code. Requests about other scripts
// are not counted, so that one script's faults stay its own while others
// are served.
func (in *Injector) FailNextFor(script string, n int, status, code int, endpoints ...string) {
	if n <= 0 {
		return
	}
	in.mu.Lock()
	in.failNext = append(in.failNext, &failRule{left: n, status: status, code: code, script: script,
		endpoints: slices.Clone(endpoints)})
	in.mu.Unlock()
}

// AnswerPageNextFor is AnswerPageNext for the requests about one script.
func (in *Injector) AnswerPageNextFor(script string, n int, endpoints ...string) {
	if n <= 0 {
		return
	}
	in.mu.Lock()
	in.failNext = append(in.failNext, &failRule{left: n, page: true, script: script, endpoints: slices.Clone(endpoints)})
	in.mu.Unlock()
}

// removalRefusals is the set of bindings whose removal the server refuses,
// by script.
type removalRefusals struct {
	mu    sync.Mutex
	names map[scriptKey][]string
}

// RefuseRemoval makes every write of the script (settings PATCH, upload,
// version) that would leave it without the binding name fail with 400
// 10021 naming it, as the API refuses to drop a binding that something
// still uses (a Durable Object class a migration refers to, for one). The
// write is not applied. Other bindings of the script change as asked.
func (in *Injector) RefuseRemoval(account, namespace, script, name string) {
	in.refusals.mu.Lock()
	defer in.refusals.mu.Unlock()
	if in.refusals.names == nil {
		in.refusals.names = map[scriptKey][]string{}
	}
	k := scriptKey{account, namespace, script}
	if !slices.Contains(in.refusals.names[k], name) {
		in.refusals.names[k] = append(in.refusals.names[k], name)
	}
}

// refusedRemoval returns the error of a write of the script from the
// bindings before to after, if it removes a binding RefuseRemoval named.
func (in *Injector) refusedRemoval(k scriptKey, before, after []wire.Binding) *Error {
	in.refusals.mu.Lock()
	names := slices.Clone(in.refusals.names[k])
	in.refusals.mu.Unlock()
	for _, name := range names {
		had := slices.ContainsFunc(before, func(b wire.Binding) bool { return b.Name() == name })
		keeps := slices.ContainsFunc(after, func(b wire.Binding) bool { return b.Name() == name })
		if had && !keeps {
			return errorf(http.StatusBadRequest, CodeValidation,
				"binding %s is in use and cannot be removed: %s is not defined in the new bindings", name, name)
		}
	}
	return nil
}
