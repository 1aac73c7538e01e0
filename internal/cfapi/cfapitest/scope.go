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
func (in *Injector) DenyAccount(account string) {
	in.scoped.mu.Lock()
	defer in.scoped.mu.Unlock()
	if in.scoped.accounts == nil {
		in.scoped.accounts = map[string]bool{}
	}
	in.scoped.accounts[account] = true
}

// AllowAccount puts account back into the token's scope.
func (in *Injector) AllowAccount(account string) {
	in.scoped.mu.Lock()
	defer in.scoped.mu.Unlock()
	delete(in.scoped.accounts, account)
}

// denied reports whether account is outside the token's scope.
func (in *Injector) denied(account string) bool {
	return in.scoped.denied(account)
}

// denied reports whether account is in the set.
func (a *accountScope) denied(account string) bool {
	if account == "" {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accounts[account]
}
