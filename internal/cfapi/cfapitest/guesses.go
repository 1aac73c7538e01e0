package cfapitest

import (
	"fmt"
	"net/http"
)

// SpecGuesses switch the emulator from its default answer to the other
// plausible one wherever the published API reference and the developer
// docs leave the real API's behaviour open (doc.go, "Guesses against the
// API reference"), so the product can be tested against both. The zero
// value is the emulator's default for every guess.
type SpecGuesses struct {
	// RefuseTypeName makes a settings PATCH refuse an entry of only
	// {type, name} for a binding type that has a value (kv_namespace,
	// plain_text, secret_text, ...) with 400 10021 naming the binding,
	// instead of keeping the current value. The reference marks the value
	// members required; only wrangler's source says the API keeps them.
	RefuseTypeName bool
	// ScriptList is how the list of a dispatch namespace's scripts is
	// served; the endpoint is in the developer docs, not the reference.
	ScriptList ScriptListMode
	// OmitListCursor leaves "cursor" out of that list's result_info (pages
	// stay bounded by limit), as an API that pages some other way would.
	OmitListCursor bool
}

// ScriptListMode is how GET …/dispatch/namespaces/{ns}/scripts answers.
type ScriptListMode int

const (
	// ScriptListServed, the default, lists the scripts with a cursor.
	ScriptListServed ScriptListMode = iota
	// ScriptListNotFound answers 404 code 7000 "No route for that URI", as
	// for a path the API does not have.
	ScriptListNotFound
	// ScriptListNotAllowed answers 405 code 10000, as for a method the
	// path does not take.
	ScriptListNotAllowed
)

// refuseScriptList writes the answer of a script list the guesses remove
// and reports whether it did.
func (g SpecGuesses) refuseScriptList(w http.ResponseWriter, r *http.Request) bool {
	switch g.ScriptList {
	case ScriptListNotFound:
		writeError(w, http.StatusNotFound, CodeNoRoute, "No route for that URI")
		return true
	case ScriptListNotAllowed:
		w.Header().Set("Allow", "PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			fmt.Sprintf("%s method not allowed for the api_token authentication scheme", r.Method))
		return true
	}
	return false
}
