package tools

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll returns what Next returned for each line until io.EOF: the line,
// or "ERR <message>".
func readAll(t *testing.T, lr *LineReader) []string {
	t.Helper()
	var out []string
	for i := 0; i < 1000; i++ {
		line, n, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			var tl *TooLongError
			if !errors.As(err, &tl) || tl.Line != n {
				t.Fatalf("line %d: %v (not a TooLongError naming the line)", n, err)
			}
			out = append(out, "ERR "+err.Error())
			continue
		}
		if n != len(out)+1 {
			t.Fatalf("line number %d after %d lines", n, len(out))
		}
		out = append(out, string(line))
	}
	t.Fatal("Next never returned io.EOF")
	return nil
}

// TestLineReaderSkipsALongLineInTheMiddle: a line far over the limit (and
// over the reader's buffer) in the middle of a file is reported with its
// number, size and the limit, and every line after it is still read.
func TestLineReaderSkipsALongLineInTheMiddle(t *testing.T) {
	long := strings.Repeat("x", 3_000_000)
	in := "one\ntwo\r\n" + long + "\nfour\n\nsix"
	// One byte at a time too: the line's parts never arrive together.
	for name, r := range map[string]io.Reader{"whole": strings.NewReader(in), "byte by byte": iotest.OneByteReader(strings.NewReader(in))} {
		got := readAll(t, NewLineReader(r, 1<<20, "an event"))
		want := []string{"one", "two", "ERR line 3: 3.0 MB exceeds the 1 MiB limit of an event", "four", "", "six"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}

// TestLineReaderLimitIsExact: a line of exactly the limit is read (with
// either line ending, or none at the end); one byte more is too long.
func TestLineReaderLimitIsExact(t *testing.T) {
	const limit = 100 << 10 // over the reader's 64 KiB buffer
	at, over := strings.Repeat("a", limit), strings.Repeat("b", limit+1)
	in := at + "\n" + over + "\n" + at + "\r\n" + over + "\r\n" + at
	got := readAll(t, NewLineReader(strings.NewReader(in), limit, "a test line"))
	tooLong := func(n int) string {
		return "ERR line " + string(rune('0'+n)) + ": 102.4 kB exceeds the 100 KiB limit of a test line"
	}
	want := []string{at, tooLong(2), at, tooLong(4), at}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %.60q (%d bytes), want %.60q", i+1, got[i], len(got[i]), want[i])
		}
	}
}

// TestLineReaderReportsAReadError: a failing reader stops Next with its
// error and the line it was in, after the lines before it.
func TestLineReaderReportsAReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	lr := NewLineReader(io.MultiReader(strings.NewReader("ok\npart"), iotest.ErrReader(boom)), 1<<20, "an event")
	if line, n, err := lr.Next(); err != nil || string(line) != "ok" || n != 1 {
		t.Fatalf("first line: %q %d %v", line, n, err)
	}
	_, n, err := lr.Next()
	if !errors.Is(err, boom) || n != 2 || !strings.Contains(err.Error(), "line 2: reading input") {
		t.Fatalf("got line %d, %v; want line 2 and the read error", n, err)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512 bytes", 1 << 20: "1 MiB", 8 << 20: "8 MiB", 3_000_000: "3.0 MB", 1500: "1.5 kB", 64 << 10: "64 KiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestReadEventsNamesALongLine: plan's reader refuses a line over an
// event's limit with its number and the limit, not a scanner's "token too
// long".
func TestReadEventsNamesALongLine(t *testing.T) {
	in := bytes.Repeat([]byte("y"), 2<<20)
	_, err := ReadEvents(strings.NewReader("# a comment\n"+string(in)+"\n"), "bindings")
	if err == nil || err.Error() != "line 2: 2 MiB exceeds the 1 MiB limit of an event" {
		t.Fatalf("got %v", err)
	}
}
