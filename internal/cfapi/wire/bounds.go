package wire

import (
	"errors"
	"fmt"
)

// MaxJSONDepth is the deepest nesting of arrays and objects the reconciler
// accepts in a JSON document it did not write (an event, an answer): a
// document's top-level array or object is at depth 1. Bindings and events
// need a handful of levels; 64 leaves room for json bindings' values while
// keeping every walk over a document cheap.
const MaxJSONDepth = 64

// Errors matched by errors.Is on a *JSONBoundsError.
var (
	ErrTooLarge = errors.New("JSON document too large")
	ErrTooDeep  = errors.New("JSON document nested too deeply")
)

// JSONBoundsError is a document over a bound of CheckJSONBounds.
type JSONBoundsError struct {
	// Err is ErrTooLarge or ErrTooDeep.
	Err error
	// Limit is the bound: bytes or levels.
	Limit int
	// Got is the document's size in bytes (ErrTooLarge), or the depth
	// reached at Offset (ErrTooDeep), which is Limit+1.
	Got int
	// Offset is the byte offset where the bound was passed: the first byte
	// over the size limit, or the bracket that opened one level too many.
	Offset int
}

// Error names the bound, the offending size or depth and the offset.
func (e *JSONBoundsError) Error() string {
	if e.Err == ErrTooDeep {
		return fmt.Sprintf("%v: more than %d levels of arrays and objects (level %d opens at byte %d)", e.Err, e.Limit, e.Got, e.Offset)
	}
	return fmt.Sprintf("%v: %d bytes, over the limit of %d (at byte %d)", e.Err, e.Got, e.Limit, e.Offset)
}

// Unwrap returns ErrTooLarge or ErrTooDeep.
func (e *JSONBoundsError) Unwrap() error { return e.Err }

// CheckJSONBounds reports whether data stays within maxBytes bytes and
// maxDepth levels of nested arrays and objects, in one pass over data that
// allocates nothing unless it fails. It does not validate the JSON: it
// counts brackets outside strings, so a caller bounds a document with it
// before anything decodes, redacts or copies the document, then validates
// it. A limit of zero or less is not checked.
func CheckJSONBounds(data []byte, maxBytes, maxDepth int) error {
	if maxBytes > 0 && len(data) > maxBytes {
		return &JSONBoundsError{Err: ErrTooLarge, Limit: maxBytes, Got: len(data), Offset: maxBytes}
	}
	if maxDepth <= 0 {
		return nil
	}
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > maxDepth {
				return &JSONBoundsError{Err: ErrTooDeep, Limit: maxDepth, Got: depth, Offset: i}
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}
