package cfapitest

import (
	"net/http"
)

// EndpointDeleteScript is DELETE D and DELETE O: removing a script with
// its versions, deployments and bindings.
const EndpointDeleteScript = "delete_script"

// deleteScript removes the script p names (the API reference's "Delete
// Worker" and "Delete Script" of a dispatch namespace; ?force is accepted
// and changes nothing, as the emulator models no references between
// scripts). A missing script is the not-found error of its kind.
func (s scriptsAPI) deleteScript(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(*script) {
		delete(s.scripts, p.key())
		if ns := s.namespaces[nsKey{p.account, p.namespace}]; ns != nil {
			ns.modified = s.now()
		}
		writeResult(w, nil, nil)
	})
}
