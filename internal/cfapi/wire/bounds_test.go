package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCheckJSONBounds(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	cases := []struct {
		name, in         string
		maxBytes, depth  int
		want             error
		limit, got, offs int
	}{
		{"flat", `{"a":1}`, 100, 2, nil, 0, 0, 0},
		{"at the depth limit", nest(MaxJSONDepth), 1 << 20, MaxJSONDepth, nil, 0, 0, 0},
		{"one level over", nest(MaxJSONDepth + 1), 1 << 20, MaxJSONDepth, ErrTooDeep, MaxJSONDepth, MaxJSONDepth + 1, MaxJSONDepth},
		{"objects count too", `{"a":{"b":{"c":1}}}`, 100, 2, ErrTooDeep, 2, 3, 10},
		{"brackets in strings do not count", `{"a":"[[[[{{{{\"[[[["}`, 100, 1, nil, 0, 0, 0},
		{"an escaped backslash ends the string", `["\\",[[1]]]`, 100, 2, ErrTooDeep, 2, 3, 7},
		{"siblings do not add up", `[[1],[2],[3]]`, 100, 2, nil, 0, 0, 0},
		{"too large", `{"a":"` + strings.Repeat("x", 100) + `"}`, 64, 0, ErrTooLarge, 64, 108, 64},
		{"at the size limit", `[1]`, 3, 1, nil, 0, 0, 0},
		{"no limits", nest(1000), 0, 0, nil, 0, 0, 0},
		{"unterminated string is left to validation", `["abc`, 100, 1, nil, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckJSONBounds([]byte(c.in), c.maxBytes, c.depth)
			if c.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var be *JSONBoundsError
			if !errors.Is(err, c.want) || !errors.As(err, &be) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if be.Limit != c.limit || be.Got != c.got || be.Offset != c.offs {
				t.Fatalf("got limit %d, got %d, offset %d; want %d, %d, %d", be.Limit, be.Got, be.Offset, c.limit, c.got, c.offs)
			}
			if c.want == ErrTooDeep && c.in[be.Offset] != '[' && c.in[be.Offset] != '{' {
				t.Fatalf("offset %d is not a bracket", be.Offset)
			}
			if errors.Is(err, ErrTooLarge) == errors.Is(err, ErrTooDeep) {
				t.Fatal("the error matches both sentinels or neither")
			}
			for _, s := range []string{c.want.Error(), "byte"} {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("message %q does not say %q", err, s)
				}
			}
		})
	}
}

// TestCheckJSONBoundsAllocatesNothing: the check of a document within its
// bounds, the size of an event, allocates nothing.
func TestCheckJSONBoundsAllocatesNothing(t *testing.T) {
	in := deepEvent(1<<20, MaxJSONDepth-1) // the outer object is level 1
	if n := testing.AllocsPerRun(5, func() {
		if err := CheckJSONBounds(in, 1<<20, MaxJSONDepth); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	if err := CheckJSONBounds(deepEvent(1<<20, MaxJSONDepth), 1<<20, MaxJSONDepth); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("one level deeper: %v", err)
	}
}

// FuzzCheckJSONBounds: on valid JSON, CheckJSONBounds passes exactly the
// documents whose deepest nesting, as encoding/json's decoder counts it,
// is within the limit, and a too-deep error points at an opening bracket.
func FuzzCheckJSONBounds(f *testing.F) {
	for _, s := range redactSeeds(f) {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		if !json.Valid(data) {
			return
		}
		limit = 1 + abs(limit)%8
		want := decodedDepth(t, data)
		err := CheckJSONBounds(data, 0, limit)
		if (err == nil) != (want <= limit) {
			t.Fatalf("depth %d, limit %d: %v", want, limit, err)
		}
		var be *JSONBoundsError
		if err != nil && (!errors.As(err, &be) || be.Got != limit+1 || data[be.Offset] != '[' && data[be.Offset] != '{') {
			t.Fatalf("depth %d, limit %d: %#v", want, limit, err)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -(n + 1)
	}
	return n
}

// decodedDepth returns the deepest nesting of the valid JSON document data.
func decodedDepth(t *testing.T, data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return deepest
		}
		if err != nil {
			t.Fatal(err)
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			deepest = max(deepest, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}
