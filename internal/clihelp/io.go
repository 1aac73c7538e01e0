package clihelp

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// OneArg returns the single positional argument of f, or "-" (stdin) when
// optional and absent; what names it in the error.
func OneArg(f *Flags, what string, optional bool) (string, error) {
	switch len(f.Pos) {
	case 0:
		if optional {
			return "-", nil
		}
		return "", Usagef("missing %s (a file name, or - for stdin)", what)
	case 1:
		return f.Pos[0], nil
	}
	return "", Usagef("want one %s, got %d arguments: %s", what, len(f.Pos), strings.Join(f.Pos, " "))
}

// OpenInput opens a file, or stdin for "-"; a file that cannot be opened
// is a usage error.
func OpenInput(name string, stdin io.Reader) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(stdin), nil
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, Usagef("%v", err)
	}
	return fh, nil
}

// InputName is how messages name an input: the file, or stdin for "-".
func InputName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

// JSONOr writes v as one JSON line when output is "json", else calls
// text.
func JSONOr(w io.Writer, output string, v any, text func(io.Writer) error) error {
	if output != "json" {
		return text(w)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(data))
	return err
}

// JSONLinesOr writes each of vs as a JSON line when output is "json",
// else calls text.
func JSONLinesOr[T any](w io.Writer, output string, vs []T, text func(io.Writer) error) error {
	if output != "json" {
		return text(w)
	}
	for _, v := range vs {
		line, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(w, string(line)); err != nil {
			return err
		}
	}
	return nil
}
