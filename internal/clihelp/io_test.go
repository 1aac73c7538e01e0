package clihelp

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// TestOneArgAndInput: one positional argument, "-" when optional and
// absent, a usage error otherwise; a missing file is a usage error; stdin
// is named stdin.
func TestOneArgAndInput(t *testing.T) {
	f := NewFlags("plan", func(string) string { return "" }, io.Discard)
	var ue *UsageError
	if name, err := OneArg(f, "input", true); name != "-" || err != nil {
		t.Errorf("optional, none: %q %v", name, err)
	}
	if _, err := OneArg(f, "input", false); !errors.As(err, &ue) || !strings.Contains(err.Error(), "missing input") {
		t.Errorf("required, none: %v", err)
	}
	f.Pos = []string{"a", "b"}
	if _, err := OneArg(f, "input", true); !errors.As(err, &ue) || !strings.Contains(err.Error(), "got 2 arguments: a b") {
		t.Errorf("two: %v", err)
	}
	if _, err := OpenInput(filepath.Join(t.TempDir(), "nope"), nil); !errors.As(err, &ue) {
		t.Errorf("missing file: %v", err)
	}
	if InputName("-") != "stdin" || InputName("x.jsonl") != "x.jsonl" {
		t.Error("InputName")
	}
	var buf bytes.Buffer
	if err := JSONLinesOr(&buf, "json", []int{1, 2}, nil); err != nil || buf.String() != "1\n2\n" {
		t.Errorf("JSON lines %q %v", buf.String(), err)
	}
	buf.Reset()
	if err := JSONOr(&buf, "text", 1, func(w io.Writer) error { _, err := io.WriteString(w, "one"); return err }); err != nil || buf.String() != "one" {
		t.Errorf("text %q %v", buf.String(), err)
	}
}
