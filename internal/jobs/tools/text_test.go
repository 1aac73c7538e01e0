package tools

import (
	"bytes"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/jobs/state"
)

// TestPublishSummaryLine: the line counts what happened, in words.
func TestPublishSummaryLine(t *testing.T) {
	for sum, want := range map[*PublishSummary]string{
		{Published: 1}: "published 1 event",
		{Published: 5, Duplicates: 2, Invalid: 1, FirstInvalid: "line 3: bad"}: "published 5 events (2 duplicates dropped by the stream), 1 invalid (line 3: bad)",
		{Published: 0, Invalid: 2, FirstInvalid: "line 1: bad", Failed: 1}:     "published 0 events, 2 invalid (the first: line 1: bad), 1 not accepted by the stream",
	} {
		if got := sum.String(); got != want {
			t.Errorf("%+v: %q, want %q", *sum, got, want)
		}
	}
}

// TestWriteDeadLetters: text has two lines a letter and the count; JSON
// lines have one object a letter and nothing else.
func TestWriteDeadLetters(t *testing.T) {
	entries := []DLQEntry{{Seq: 7, Record: state.DeadLetter{Subject: "bindings.a.b.c", Attempts: 3, Error: "boom"}}}
	var text, js bytes.Buffer
	WriteDeadLetters(&text, false, entries)
	WriteDeadLetters(&js, true, entries)
	if !strings.HasPrefix(text.String(), "#7  ") || !strings.Contains(text.String(), "event=-") || !strings.HasSuffix(text.String(), "    boom\n1 dead letters\n") {
		t.Errorf("text:\n%s", text.String())
	}
	if strings.Count(js.String(), "\n") != 1 || !strings.HasPrefix(js.String(), `{"seq":7,`) {
		t.Errorf("json:\n%s", js.String())
	}
}
