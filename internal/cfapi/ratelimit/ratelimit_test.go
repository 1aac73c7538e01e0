package ratelimit

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseRateLimitHeaders(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		name, rl, pol string
		want          RateLimitView
		errs          int
	}{
		{"cloudflare", `"default";r=50;t=30`, `"default";q=1200;w=300`,
			RateLimitView{Name: "default", Remaining: 50, Reset: 30 * time.Second, Quota: 1200, Window: 5 * time.Minute, Seen: now}, 0},
		{"burst is tighter", `"default";r=900;t=200, "burst";r=3;t=20`, `"burst";q=100;w=60, "default";q=1200;w=300`,
			RateLimitView{Name: "burst", Remaining: 3, Reset: 20 * time.Second, Quota: 100, Window: time.Minute, Seen: now}, 0},
		{"token names and unknown parameters", `default;r=7;t=1;foo="x";bar=?1;baz=1.5;pk=:AAE=:`, `default;q=20;w=1;comment="a, b"`,
			RateLimitView{Name: "default", Remaining: 7, Reset: time.Second, Quota: 20, Window: time.Second, Seen: now}, 0},
		{"no policy", `"default";r=0;t=12`, ``,
			RateLimitView{Name: "default", Remaining: 0, Reset: 12 * time.Second, Seen: now}, 0},
		{"missing t skipped, next used", `"a";r=5, "default";r=9;t=3`, `"default";q=10;w=10`,
			RateLimitView{Name: "default", Remaining: 9, Reset: 3 * time.Second, Quota: 10, Window: 10 * time.Second, Seen: now}, 1},
		{"malformed member skipped", `"default";r=x;t=1, "default";r=4;t=2`, `"default";q=-5;w=1`,
			RateLimitView{Name: "default", Remaining: 4, Reset: 2 * time.Second, Seen: now}, 2},
		{"negative and huge", `"d";r=-1;t=5, "e";r=1;t=9999999999999999`, ``, RateLimitView{}, 2},
		{"garbage", `(r=1;t=2)`, `;;;`, RateLimitView{}, 2},
		{"unterminated string", `"default;r=1;t=2`, ``, RateLimitView{}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.rl != "" {
				h.Set(HeaderRateLimit, c.rl)
			}
			if c.pol != "" {
				h.Set(HeaderRateLimitPolicy, c.pol)
			}
			got, errs := ViewFromHeader(h, now)
			if got != c.want {
				t.Errorf("view %+v, want %+v", got, c.want)
			}
			if len(errs) != c.errs {
				t.Errorf("%d errors %v, want %d", len(errs), errs, c.errs)
			}
		})
	}
}

func TestRateLimitHeaderLinesJoin(t *testing.T) {
	h := http.Header{}
	h.Add(HeaderRateLimit, `"default";r=10;t=5`)
	h.Add(HeaderRateLimit, `"burst";r=2;t=1`)
	v, errs := ViewFromHeader(h, time.Unix(1, 0))
	if len(errs) != 0 || v.Name != "burst" || v.Remaining != 2 {
		t.Fatalf("view %+v, errors %v", v, errs)
	}
	if v, _ := ViewFromHeader(http.Header{}, time.Unix(1, 0)); v.Valid() {
		t.Fatalf("no headers gave a view %+v", v)
	}
}

// FuzzRateLimitHeaders parses arbitrary Ratelimit and Ratelimit-Policy
// values. It must never panic; a view holds no negative number, its policy
// is whole or absent, and errors are valid UTF-8 of bounded length.
func FuzzRateLimitHeaders(f *testing.F) {
	for _, s := range [][2]string{
		{`"default";r=50;t=30`, `"default";q=1200;w=300`},
		{`"default";r=900;t=200, "burst";r=3;t=20`, `"burst";q=100;w=60, "default";q=1200;w=300`},
		{`default;r=7;t=1;foo="x";bar=?1;baz=1.5`, `default;q=20;w=1`},
		{`"a\"b";r=1;t=1`, `(1 2);q=1`},
		{`"default";r=999999999999999;t=0`, `"default";q=0;w=0`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, rl, pol string) {
		h := http.Header{}
		h.Set(HeaderRateLimit, rl)
		h.Set(HeaderRateLimitPolicy, pol)
		v, errs := ViewFromHeader(h, time.Unix(1, 0))
		if v.Remaining < 0 || v.Reset < 0 || v.Quota < 0 || v.Window < 0 {
			t.Fatalf("negative value in %+v", v)
		}
		if (v.Quota == 0) != (v.Window == 0) {
			t.Fatalf("half a policy in %+v", v)
		}
		for _, e := range errs {
			if msg := e.Error(); len(msg) > 400 || !utf8.ValidString(msg) && utf8.ValidString(rl+pol) {
				t.Fatalf("error %q", msg)
			}
			if strings.Contains(e.Error(), "\n") {
				t.Fatalf("error with a newline: %q", e.Error())
			}
		}
	})
}
