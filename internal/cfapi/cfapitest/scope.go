package cfapitest

import "sync"

// accountScope is the set of accounts the server's token may not reach.
type accountScope struct {
	mu       sync.Mutex
	accounts map[string]bool
}

// DenyAccount puts account outside the token's scope: every request under
// /accounts/{account} is answered 403 with code 10000 ("Authentication
// error"), as the API answers for an account the token was not granted,
// while the token still verifies and every other account works.
func (s *Server) DenyAccount(account string) {
	s.scoped.mu.Lock()
	defer s.scoped.mu.Unlock()
	if s.scoped.accounts == nil {
		s.scoped.accounts = map[string]bool{}
	}
	s.scoped.accounts[account] = true
}

// AllowAccount puts account back into the token's scope.
func (s *Server) AllowAccount(account string) {
	s.scoped.mu.Lock()
	defer s.scoped.mu.Unlock()
	delete(s.scoped.accounts, account)
}

// denied reports whether account is outside the token's scope.
func (a *accountScope) denied(account string) bool {
	if account == "" {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accounts[account]
}
