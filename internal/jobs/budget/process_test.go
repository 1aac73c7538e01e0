package budget

import "testing"

// TestParseReserve: N requests or P% of the quota; zero is none (-1);
// negative, 100% and more, and words are refused.
func TestParseReserve(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		frac float64
		ok   bool
	}{
		{"10%", 0, 0.1, true}, {" 2.5 % ", 0, 0.025, true}, {"0%", 0, -1, true}, {"50", 50, 0, true}, {"0", 0, -1, true},
		{"100%", 0, 0, false}, {"-1", 0, 0, false}, {"-5%", 0, 0, false}, {"lots", 0, 0, false}, {"", 0, 0, false},
	} {
		n, frac, ok := ParseReserve(c.in)
		if n != c.n || frac != c.frac || ok != c.ok {
			t.Errorf("ParseReserve(%q) = %d, %v, %v; want %d, %v, %v", c.in, n, frac, ok, c.n, c.frac, c.ok)
		}
	}
}
