package cfapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Classifiers for the answers of the API's behaviours that its published
// reference leaves open, so a caller can fall back to the documented path
// (see cfapitest's "Guesses against the API reference").

// ErrListCursorMissing is returned by ListScripts when an answer's
// result_info has no "cursor" member while the page may not be the last
// (it holds as many scripts as asked for, or no limit was given): the
// listing cannot be continued and would be silently incomplete.
var ErrListCursorMissing = errors.New("cloudflare: the script list answer has no cursor; the list cannot be continued")

// IsListUnsupported reports whether err says the dispatch namespace script
// list cannot be used to enumerate scripts: the route is missing (404 code
// 7000 "No route for that URI") or does not take GET (405), or the answer
// cannot be paged (ErrListCursorMissing). A missing namespace (10092) is
// not: the namespace is wrong, not the endpoint. A caller then reads the
// scripts it knows one by one.
func IsListUnsupported(err error) bool {
	if errors.Is(err, ErrListCursorMissing) {
		return true
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Method != http.MethodGet || !strings.HasSuffix(ae.Path, "/scripts") {
		return false
	}
	switch {
	case ae.StatusCode == http.StatusMethodNotAllowed:
		return true
	case ae.StatusCode == http.StatusNotFound:
		return ae.CodeIs(CodeNoRoute) && !ae.CodeIs(CodeDispatchNotFound)
	}
	return false
}

// TypeNameRefused reports whether err is a settings PATCH refused because
// of an entry of only {type, name} among sent (the patch's bindings): a
// 400 with code 10021 whose message names such an entry. It returns that
// binding's name. A caller then writes the change as an upload that keeps
// the values another way (inherit entries, keep_bindings).
func TypeNameRefused(err error, sent wire.Bindings) (string, bool) {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Method != http.MethodPatch || !strings.HasSuffix(ae.Path, "/settings") ||
		ae.StatusCode != http.StatusBadRequest {
		return "", false
	}
	for _, d := range ae.Errors {
		if d.Code != CodeValidation {
			continue
		}
		for _, b := range sent {
			if isTypeName(b) && mentionsName(d.Message, b.Name()) {
				return b.Name(), true
			}
		}
	}
	return "", false
}

// IsTypeNameRefused is TypeNameRefused without the name.
func IsTypeNameRefused(err error, sent wire.Bindings) bool {
	_, ok := TypeNameRefused(err, sent)
	return ok
}

// isTypeName reports whether b has exactly the members type and name.
func isTypeName(b wire.Binding) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(b.Raw(), &fields) != nil {
		return false
	}
	_, t := fields["type"]
	_, n := fields["name"]
	return len(fields) == 2 && t && n
}

// mentionsName reports whether msg names name as a word: quoted, or
// between characters that cannot be part of a binding name.
func mentionsName(msg, name string) bool {
	if name == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		if (start == 0 || !nameByte(msg[start-1])) && (end == len(msg) || !nameByte(msg[end])) {
			return true
		}
		i = start + 1
	}
}

func nameByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
