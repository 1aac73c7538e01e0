package cfapitest

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// DefaultUserID is the id of the emulator's one user (Options.UserID).
const DefaultUserID = "7c5dae5552338874e5053f2534d2767a"

// userAPI answers the user routes and checks the credentials of every
// request.
type userAPI struct{ *store }

// authorized reports whether r carries one of the user's credentials
// (any request does when the server has none).
func (s userAPI) authorized(r *http.Request) bool {
	if s.opts.Token == "" && (s.opts.Email == "" || s.opts.Key == "") {
		return true
	}
	if s.extraToken(r) {
		return true
	}
	if s.opts.Token != "" &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+s.opts.Token)) == 1 {
		return true
	}
	if s.opts.Email != "" && s.opts.Key != "" && r.Header.Get("X-Auth-Email") == s.opts.Email &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Auth-Key")), []byte(s.opts.Key)) == 1 {
		return true
	}
	return false
}

// userID returns the user every credential of the emulator belongs to.
func (s userAPI) userID() string {
	if s.opts.UserID != "" {
		return s.opts.UserID
	}
	return DefaultUserID
}

// extraToken reports whether r carries one of Options.MoreTokens: more
// tokens of the same user, which share the user's rate limit.
func (s userAPI) extraToken(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	for _, t := range s.opts.MoreTokens {
		if t != "" && subtle.ConstantTimeCompare([]byte(auth), []byte("Bearer "+t)) == 1 {
			return true
		}
	}
	return false
}

// serveUser answers GET /user (the user, id and email) and GET
// /user/tokens/verify (the token's id and status) and reports whether r
// was one of them. The token id is derived from the token, never the
// token itself.
func (s userAPI) serveUser(w http.ResponseWriter, r *http.Request) bool {
	path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, s.prefix), "/")
	if path != "/user" && path != "/user/tokens/verify" {
		return false
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" method not allowed for the api_token authentication scheme")
		return true
	}
	if path == "/user" {
		writeResult(w, map[string]any{"id": s.userID(), "email": "user@example.com"}, nil)
		return true
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	writeResult(w, map[string]any{"id": tokenID(tok), "status": "active"}, nil)
	return true
}

// tokenID is a stable 32-hex-digit id of a token.
func tokenID(tok string) string {
	h := uint64(14695981039346656037)
	var out [32]byte
	const hexd = "0123456789abcdef"
	for i := range out {
		for _, c := range []byte(tok) {
			h = (h ^ uint64(c)) * 1099511628211
		}
		h = (h ^ uint64(i)) * 1099511628211
		out[i] = hexd[h&15]
	}
	return string(out[:])
}
