package cfapi

import "unicode/utf8"

// truncMarker ends a string that Truncate cut.
const truncMarker = "..."

// Truncate returns s cut to at most n bytes for an error message, a log
// line or a rendered plan: s itself when it fits, else its longest prefix
// that ends on a UTF-8 character boundary, followed by "..." within the n
// bytes. When n is too small for the marker and one byte, the prefix is
// returned without it.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= len(truncMarker) {
		return cutUTF8(s, max(n, 0))
	}
	return cutUTF8(s, n-len(truncMarker)) + truncMarker
}

// cutUTF8 returns the longest prefix of s of at most n < len(s) bytes that
// does not split a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
