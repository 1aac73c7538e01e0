package cfapi

import (
	"strings"
	"testing"
)

// TestCredentialsFromEnv: a token, or the pair; half a pair is refused,
// and no credentials at all only against an emulator. The budget key of
// each is distinct, and errors hold no value.
func TestCredentialsFromEnv(t *testing.T) {
	const emu = "http://127.0.0.1:8787/client/v4"
	cases := []struct {
		env     map[string]string
		base    string
		wantErr string
		key     string
	}{
		{map[string]string{"CLOUDFLARE_API_TOKEN": "tok-secret"}, DefaultBaseURL, "", "tok-secret"},
		{map[string]string{"CLOUDFLARE_API_EMAIL": "a@b.c", "CLOUDFLARE_API_KEY": "key-secret"}, DefaultBaseURL, "", "a@b.c\x00key-secret"},
		{map[string]string{"CLOUDFLARE_API_EMAIL": "a@b.c"}, emu, "must be set together", ""},
		{map[string]string{"CLOUDFLARE_API_KEY": "key-secret"}, DefaultBaseURL, "must be set together", ""},
		{nil, DefaultBaseURL + "/", "CLOUDFLARE_API_TOKEN is not set", ""},
		{nil, emu, "", "base-url:" + emu},
	}
	for _, c := range cases {
		creds, err := CredentialsFromEnv(func(k string) string { return c.env[k] }, c.base)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%v at %s: error %v, want one saying %q without a value", c.env, c.base, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v at %s: %v", c.env, c.base, err)
			continue
		}
		if got := creds.BudgetKey(c.base); got != c.key {
			t.Errorf("%v: budget key %q, want %q", c.env, got, c.key)
		}
		if cfg := creds.Apply(Config{BaseURL: c.base}); cfg.Token != creds.Token || cfg.APIKey != creds.APIKey || cfg.BaseURL != c.base {
			t.Errorf("Apply: %+v", cfg)
		}
	}
}
