package cfapi

import (
	"errors"
	"strings"
)

// Credentials is what authenticates to the API: a token, or the legacy
// email and global API key pair.
type Credentials struct{ Token, Email, APIKey string }

// CredentialsFromEnv reads the credentials from CLOUDFLARE_API_TOKEN, or
// CLOUDFLARE_API_EMAIL with CLOUDFLARE_API_KEY, through getenv. A token
// (or the pair) is required against the real API (DefaultBaseURL); an
// emulator (any other base URL) may run without one. The error names the
// variables, never a value.
func CredentialsFromEnv(getenv func(string) string, baseURL string) (Credentials, error) {
	c := Credentials{Token: getenv("CLOUDFLARE_API_TOKEN"), Email: getenv("CLOUDFLARE_API_EMAIL"), APIKey: getenv("CLOUDFLARE_API_KEY")}
	if c.Token == "" && (c.Email != "") != (c.APIKey != "") {
		return c, errors.New("CLOUDFLARE_API_EMAIL and CLOUDFLARE_API_KEY must be set together")
	}
	if c.Token == "" && c.Email == "" && strings.TrimRight(baseURL, "/") == DefaultBaseURL {
		return c, errors.New("CLOUDFLARE_API_TOKEN is not set (or CLOUDFLARE_API_EMAIL with CLOUDFLARE_API_KEY); it is required for " + DefaultBaseURL)
	}
	return c, nil
}

// BudgetKey identifies the budget these credentials draw from: the token,
// or the legacy key pair; without credentials (an emulator without auth),
// the API base URL. It is a secret: the shared budget keeps only a hash
// of it.
func (c Credentials) BudgetKey(baseURL string) string {
	switch {
	case c.Token != "":
		return c.Token
	case c.Email != "":
		return c.Email + "\x00" + c.APIKey
	}
	return "base-url:" + baseURL
}

// Apply sets the credentials of cfg.
func (c Credentials) Apply(cfg Config) Config {
	cfg.Token, cfg.Email, cfg.APIKey = c.Token, c.Email, c.APIKey
	return cfg
}
