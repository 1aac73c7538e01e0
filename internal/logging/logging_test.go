package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestNewFormatsAndLevels: auto off a terminal is JSON with "ts"; console
// is plain text with upper-case levels; the level drops what is below it.
func TestNewFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	log := New("auto", "warn", &buf)
	log.Info("dropped")
	log.Warn("kept")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("auto off a terminal: %v in %q", err, buf.String())
	}
	if line["msg"] != "kept" || line["level"] != "warn" || line["ts"] == nil {
		t.Errorf("JSON line %v", line)
	}
	buf.Reset()
	log = New("console", "debug", &buf)
	log.Debug("shown")
	if out := buf.String(); !strings.Contains(out, "DEBUG") || !strings.Contains(out, "shown") || strings.Contains(out, "\x1b[") {
		t.Errorf("console off a terminal: %q", out)
	}
}
