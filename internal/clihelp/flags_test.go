package clihelp

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestFlagsEnvDefaults: a flag wins over its variable and the variable
// over the default; a bad variable is a UsageError naming it; an alias
// sets the same value and shares the variable; Label and IsSet name the
// variable; NoArgs names the command.
func TestFlagsEnvDefaults(t *testing.T) {
	env := map[string]string{"X_NAME": "from-env", "X_N": "7", "X_WAIT": "soon"}
	f := NewFlags("tool sub", func(k string) string { return env[k] }, io.Discard)
	var name string
	var n int
	var wait time.Duration
	f.Str(&name, "name", "X_NAME", "def", "a name")
	f.Int(&n, "n", "X_N", 1, "a number")
	f.Duration(&wait, "wait", "X_WAIT", time.Second, "a wait")
	f.Alias("old-name", "name")
	if got := f.Lookup("name").Usage; got != "a name (env X_NAME)" {
		t.Errorf("usage %q", got)
	}
	err := f.ParseArgs([]string{"pos", "--n", "9"})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `X_WAIT="soon": want a duration`) {
		t.Fatalf("bad X_WAIT: %v", err)
	}
	if name != "from-env" || n != 9 || wait != time.Second {
		t.Errorf("name=%q n=%d wait=%s, want from-env 9 1s", name, n, wait)
	}
	if !f.IsSet("name") || !f.IsSet("n") || !f.IsSet("wait") {
		t.Errorf("IsSet: name %v n %v wait %v", f.IsSet("name"), f.IsSet("n"), f.IsSet("wait"))
	}
	if f.Label("old-name") != "--old-name (or X_NAME)" || f.Label("other") != "--other" {
		t.Errorf("Label: %q %q", f.Label("old-name"), f.Label("other"))
	}
	if err := f.NoArgs("use --name"); err == nil || err.Error() != `tool sub takes no arguments, got ["pos"] (use --name)` {
		t.Errorf("NoArgs: %v", err)
	}

	g := NewFlags("t", func(string) string { return "" }, io.Discard)
	g.Str(&name, "name", "", "def", "a name")
	g.Alias("old-name", "name")
	if err := g.ParseArgs([]string{"--old-name", "x"}); err != nil || name != "x" || g.IsSet("wait") {
		t.Errorf("alias: %v %q", err, name)
	}
	calls := 0
	first := errors.New("first")
	err = ValidateAll(g, func(*Flags) error { calls++; return nil }, func(*Flags) error { calls++; return first }, func(*Flags) error { calls++; return nil })
	if err != first || calls != 2 {
		t.Errorf("ValidateAll: %v after %d calls, want the first error after 2", err, calls)
	}
}
