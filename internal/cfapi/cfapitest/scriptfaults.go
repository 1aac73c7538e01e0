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
func (s *Server) FailNextFor(script string, n int, status, code int, endpoints ...string) {
	if n <= 0 {
		return
	}
	s.faultMu.Lock()
	s.failNext = append(s.failNext, &failRule{left: n, status: status, code: code, script: script,
		endpoints: slices.Clone(endpoints)})
	s.faultMu.Unlock()
}

// AnswerPageNextFor is AnswerPageNext for the requests about one script.
func (s *Server) AnswerPageNextFor(script string, n int, endpoints ...string) {
	if n <= 0 {
		return
	}
	s.faultMu.Lock()
	s.failNext = append(s.failNext, &failRule{left: n, page: true, script: script, endpoints: slices.Clone(endpoints)})
	s.faultMu.Unlock()
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
func (s *Server) RefuseRemoval(account, namespace, script, name string) {
	s.refusals.mu.Lock()
	defer s.refusals.mu.Unlock()
	if s.refusals.names == nil {
		s.refusals.names = map[scriptKey][]string{}
	}
	k := scriptKey{account, namespace, script}
	if !slices.Contains(s.refusals.names[k], name) {
		s.refusals.names[k] = append(s.refusals.names[k], name)
	}
}

// refusedRemoval returns the error of a write of the script from the
// bindings before to after, if it removes a binding RefuseRemoval named.
func (s *Server) refusedRemoval(k scriptKey, before, after []wire.Binding) *Error {
	s.refusals.mu.Lock()
	names := slices.Clone(s.refusals.names[k])
	s.refusals.mu.Unlock()
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
