package cfapi

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	cases := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exact", 5, "exact"},
		{"abcdefghij", 8, "abcde..."},
		{"ééééé", 8, "éé..."},    // 10 bytes; 5 left for text, the third é would be split
		{"aéééé", 7, "aé..."},    // the cut lands inside the second é
		{"日本語テキスト", 10, "日本..."}, // 3-byte characters
		{"abcdef", 3, "abc"},     // no room for the marker
		{"ééé", 3, "é"},
		{"abc", 0, ""},
		{"abc", -1, ""},
	}
	for _, c := range cases {
		got := Truncate(c.s, c.n)
		if got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
		if len(got) > max(c.n, 0) && got != c.s || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q: too long or not UTF-8", c.s, c.n, got)
		}
	}
	long := strings.Repeat("€", 400)
	for n := range 40 {
		if got := Truncate(long, n); len(got) > n || !utf8.ValidString(got) {
			t.Errorf("Truncate(€×400, %d) = %q", n, got)
		}
	}
}
