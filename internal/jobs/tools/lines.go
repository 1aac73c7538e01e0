package tools

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// LineReader reads the lines of an input of any size, one at a time,
// holding at most one line of up to its limit in memory. A longer line is
// skipped, not read into memory: Next reports it as a *TooLongError and
// the line after it is read next, so one bad line never hides the rest.
type LineReader struct {
	r     *bufio.Reader
	limit int
	what  string // what the limit is of, for TooLongError
	n     int    // number of the line Next returned last
	buf   []byte
}

// NewLineReader reads r; a line is at most limit bytes (without its line
// ending), the limit of what (e.g. "an event"), which a TooLongError
// names.
func NewLineReader(r io.Reader, limit int, what string) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), limit: limit, what: what}
}

// TooLongError is a line over a LineReader's limit; the reader skipped it.
type TooLongError struct {
	Line  int    // its number, from 1
	Size  int64  // its length in bytes, without the line ending
	Limit int    // the limit it exceeds
	What  string // what the limit is of
}

// Error names the line (when known: Line > 0), the size and the limit.
func (e *TooLongError) Error() string {
	msg := fmt.Sprintf("%s exceeds the %s limit of %s", FormatBytes(e.Size), FormatBytes(int64(e.Limit)), e.What)
	if e.Line > 0 {
		msg = fmt.Sprintf("line %d: %s", e.Line, msg)
	}
	return msg
}

// Next returns the next line, without its line ending ("\n" or "\r\n"),
// and its number. The line is valid until the next call. At the end of
// the input it returns io.EOF; for a line over the limit, a *TooLongError
// (call Next again for the following line); for a read error, the error
// naming the line it stopped in.
func (lr *LineReader) Next() ([]byte, int, error) {
	lr.buf = lr.buf[:0]
	var size, ending int64
	var prev byte // the byte before the chunk
	for {
		chunk, err := lr.r.ReadSlice('\n')
		size += int64(len(chunk))
		if size <= int64(lr.limit)+2 { // the line and its "\r\n"
			lr.buf = append(lr.buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			prev = chunk[len(chunk)-1]
			continue
		}
		if errors.Is(err, io.EOF) {
			if size == 0 {
				return nil, lr.n, io.EOF
			}
			err = nil // a last line without a line ending
		}
		lr.n++
		if err != nil {
			return nil, lr.n, fmt.Errorf("line %d: reading input: %w", lr.n, err)
		}
		if k := len(chunk); k > 0 && chunk[k-1] == '\n' {
			ending = 1
			if k >= 2 && chunk[k-2] == '\r' || k == 1 && prev == '\r' {
				ending = 2
			}
		}
		break
	}
	if n := size - ending; n > int64(lr.limit) {
		return nil, lr.n, &TooLongError{Line: lr.n, Size: n, Limit: lr.limit, What: lr.what}
	}
	return lr.buf[:size-ending], lr.n, nil
}

// FormatBytes writes a size for people: "1 MiB" for a whole number of
// mebibytes (the limits), else "3.0 MB", "12.5 kB" or "512 bytes".
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n < 1<<20 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}
