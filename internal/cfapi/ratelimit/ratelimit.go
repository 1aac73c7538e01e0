package ratelimit

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The API's rate-limit headers (IETF draft "RateLimit header fields for
// HTTP"), sent on every answer, 429s and errors included:
//
//	Ratelimit: "default";r=50;t=30          quota left r, seconds t until it resets
//	Ratelimit-Policy: "default";q=1200;w=300 quota q per window of w seconds
//
// Each is a structured-field list (RFC 8941) that may hold several items,
// such as a "burst" policy beside "default".
const (
	HeaderRateLimit       = "Ratelimit"
	HeaderRateLimitPolicy = "Ratelimit-Policy"
)

// RateLimitItem is one item of a Ratelimit list: the limit's name, the
// quota left and the time until it resets.
type RateLimitItem struct {
	Name      string
	Remaining int
	Reset     time.Duration
}

// RateLimitPolicy is one item of a Ratelimit-Policy list: the policy's
// name, its quota and its window.
type RateLimitPolicy struct {
	Name   string
	Quota  int
	Window time.Duration
}

// RateLimitView is what one answer said about the user's budget: the
// binding limit (the item with the least quota left) and its policy.
// A zero Seen means the answer carried no usable Ratelimit item.
type RateLimitView struct {
	// Name, Remaining and Reset are the Ratelimit item with the least
	// quota left (ties: "default", then the first).
	Name      string
	Remaining int
	Reset     time.Duration
	// Quota and Window are the policy of the same name, else the
	// "default" policy, else the only one; zero when none was usable.
	Quota  int
	Window time.Duration
	// Seen is when the answer arrived.
	Seen time.Time
	// Sent is when the request that got the answer was sent (zero when
	// unknown). The API's count in the answer includes the requests that
	// reached it before this one, which are, as far as the sender can
	// tell, those sent before Sent; the ones sent between Sent and Seen
	// were still in flight, and Remaining does not count them yet.
	Sent time.Time
}

// Valid reports whether the view holds a Ratelimit item.
func (v RateLimitView) Valid() bool { return !v.Seen.IsZero() }

// HasPolicy reports whether the view holds a usable policy.
func (v RateLimitView) HasPolicy() bool { return v.Quota > 0 && v.Window > 0 }

// ResetAt returns when the view's quota resets: Seen + Reset.
func (v RateLimitView) ResetAt() time.Time { return v.Seen.Add(v.Reset) }

// maxSFInteger is RFC 8941's bound on an integer: 15 digits.
const maxSFInteger = 999_999_999_999_999

// ParseRateLimit parses the Ratelimit header values (several header lines
// are one list). Members that are malformed, lack r or t, or carry a
// negative or out-of-range value are left out, each with an error that
// says why; it never panics.
func ParseRateLimit(values ...string) ([]RateLimitItem, []error) {
	var items []RateLimitItem
	var errs []error
	for i, m := range parseSFList(strings.Join(values, ","), &errs) {
		r, okR := m.intParam("r")
		t, okT := m.intParam("t")
		switch {
		case !okR:
			errs = append(errs, fmt.Errorf("%s item %d (%q): no integer r (quota left)", HeaderRateLimit, i+1, m.name))
		case !okT:
			errs = append(errs, fmt.Errorf("%s item %d (%q): no integer t (seconds until reset)", HeaderRateLimit, i+1, m.name))
		default:
			items = append(items, RateLimitItem{Name: m.name, Remaining: r, Reset: seconds(t)})
		}
	}
	return items, errs
}

// ParseRateLimitPolicy parses the Ratelimit-Policy header values, as
// ParseRateLimit does; a policy needs q ≥ 1 and w ≥ 1.
func ParseRateLimitPolicy(values ...string) ([]RateLimitPolicy, []error) {
	var pols []RateLimitPolicy
	var errs []error
	for i, m := range parseSFList(strings.Join(values, ","), &errs) {
		q, okQ := m.intParam("q")
		w, okW := m.intParam("w")
		switch {
		case !okQ || q < 1:
			errs = append(errs, fmt.Errorf("%s item %d (%q): no positive integer q (quota)", HeaderRateLimitPolicy, i+1, m.name))
		case !okW || w < 1:
			errs = append(errs, fmt.Errorf("%s item %d (%q): no positive integer w (window seconds)", HeaderRateLimitPolicy, i+1, m.name))
		default:
			pols = append(pols, RateLimitPolicy{Name: m.name, Quota: q, Window: seconds(w)})
		}
	}
	return pols, errs
}

// ViewFromHeader returns what the rate-limit headers of h say, seen at
// now, and the reasons any part of them was ignored. Without a usable
// Ratelimit item the view is zero (not Valid).
func ViewFromHeader(h http.Header, now time.Time) (RateLimitView, []error) {
	rl, pol := h.Values(HeaderRateLimit), h.Values(HeaderRateLimitPolicy)
	if len(rl) == 0 && len(pol) == 0 {
		return RateLimitView{}, nil
	}
	items, errs := ParseRateLimit(rl...)
	pols, perrs := ParseRateLimitPolicy(pol...)
	errs = append(errs, perrs...)
	if len(items) == 0 {
		return RateLimitView{}, errs
	}
	best := items[0]
	for _, it := range items[1:] {
		if it.Remaining < best.Remaining || (it.Remaining == best.Remaining && it.Name == "default" && best.Name != "default") {
			best = it
		}
	}
	v := RateLimitView{Name: best.Name, Remaining: best.Remaining, Reset: best.Reset, Seen: now}
	var chosen *RateLimitPolicy
	for i := range pols {
		switch {
		case pols[i].Name == best.Name:
			chosen = &pols[i]
		case chosen == nil && (pols[i].Name == "default" || len(pols) == 1):
			chosen = &pols[i]
		}
		if chosen != nil && chosen.Name == best.Name {
			break
		}
	}
	if chosen != nil {
		v.Quota, v.Window = chosen.Quota, chosen.Window
	}
	return v, errs
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// sfMember is one list member: a string or token and its parameters.
type sfMember struct {
	name   string
	params map[string]sfValue
}

// sfValue is a parameter's bare item; only integers are used.
type sfValue struct {
	isInt bool
	n     int
}

func (m sfMember) intParam(key string) (int, bool) {
	v, ok := m.params[key]
	if !ok || !v.isInt || v.n < 0 {
		return 0, false
	}
	return v.n, true
}

// parseSFList parses an RFC 8941 list whose members are strings or tokens
// with parameters. A malformed member is skipped (up to the next comma
// outside a string) with an error in errs; inner lists are malformed here.
func parseSFList(s string, errs *[]error) []sfMember {
	var out []sfMember
	p := sfParser{s: s}
	p.skipSpace()
	for n := 1; p.i < len(p.s); n++ {
		start := p.i
		m, err := p.member()
		if err == nil {
			p.skipOWS()
			if p.i < len(p.s) && p.s[p.i] != ',' {
				err = fmt.Errorf("unexpected %q at offset %d", p.s[p.i], p.i)
			}
		}
		if err != nil {
			*errs = append(*errs, fmt.Errorf("rate-limit list member %d %q: %w", n, clip(p.s[start:p.skipMember()]), err))
		} else {
			out = append(out, m)
		}
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
		}
		p.skipOWS()
	}
	return out
}

// clip bounds a quoted fragment in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) skipSpace() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// skipMember moves to the next comma outside a string (or the end) and
// returns the position.
func (p *sfParser) skipMember() int {
	quoted := false
	for ; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; {
		case quoted && c == '\\' && p.i+1 < len(p.s):
			p.i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ',':
			return p.i
		}
	}
	return p.i
}

func (p *sfParser) member() (sfMember, error) {
	if p.i >= len(p.s) {
		return sfMember{}, fmt.Errorf("empty member")
	}
	var m sfMember
	switch c := p.s[p.i]; {
	case c == '"':
		name, err := p.str()
		if err != nil {
			return m, err
		}
		m.name = name
	case isAlpha(c) || c == '*':
		m.name = p.token()
	default:
		return m, fmt.Errorf("want a string or token at offset %d, got %q", p.i, c)
	}
	for p.i < len(p.s) && p.s[p.i] == ';' {
		p.i++
		p.skipSpace()
		key, err := p.key()
		if err != nil {
			return m, err
		}
		v := sfValue{}
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			if v, err = p.bareItem(); err != nil {
				return m, fmt.Errorf("parameter %s: %w", key, err)
			}
		}
		if m.params == nil {
			m.params = make(map[string]sfValue)
		}
		m.params[key] = v // a repeated key: the last one wins (RFC 8941)
	}
	return m, nil
}

func (p *sfParser) str() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.i >= len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return "", fmt.Errorf("bad escape in string")
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case c == '"':
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("byte %#x in string", c)
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated string")
}

func (p *sfParser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *sfParser) key() (string, error) {
	start := p.i
	if p.i >= len(p.s) || !((p.s[p.i] >= 'a' && p.s[p.i] <= 'z') || p.s[p.i] == '*') {
		return "", fmt.Errorf("want a parameter key at offset %d", p.i)
	}
	for p.i < len(p.s) {
		c := p.s[p.i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '*' {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i], nil
}

// bareItem parses an integer, decimal, string, token, byte sequence or
// boolean; only integers keep their value.
func (p *sfParser) bareItem() (sfValue, error) {
	if p.i >= len(p.s) {
		return sfValue{}, fmt.Errorf("missing value")
	}
	switch c := p.s[p.i]; {
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == '"':
		_, err := p.str()
		return sfValue{}, err
	case isAlpha(c) || c == '*':
		p.token()
		return sfValue{}, nil
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return sfValue{}, nil
		}
		return sfValue{}, fmt.Errorf("bad boolean")
	case c == ':':
		end := strings.IndexByte(p.s[p.i+1:], ':')
		if end < 0 {
			return sfValue{}, fmt.Errorf("unterminated byte sequence")
		}
		p.i += end + 2
		return sfValue{}, nil
	default:
		return sfValue{}, fmt.Errorf("bad value %q", c)
	}
}

func (p *sfParser) number() (sfValue, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits, dot := 0, false
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c >= '0' && c <= '9' {
			digits++
			p.i++
			continue
		}
		if c == '.' && !dot {
			dot = true
			p.i++
			continue
		}
		break
	}
	text := p.s[start:p.i]
	if digits == 0 || strings.HasSuffix(text, ".") {
		return sfValue{}, fmt.Errorf("bad number %q", text)
	}
	if dot {
		return sfValue{}, nil // a decimal: well formed, not an integer
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n > maxSFInteger || n < -maxSFInteger {
		return sfValue{}, fmt.Errorf("integer %q out of range", clip(text))
	}
	return sfValue{isInt: true, n: int(n)}, nil
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func isTokenChar(c byte) bool {
	return isAlpha(c) || (c >= '0' && c <= '9') || strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0
}

// RateLimitObserver is a TokenSource that wants the API's view of the
// user's budget: the Limiter passes every answer's view on to it.
type RateLimitObserver interface {
	ObserveRateLimit(RateLimitView)
}

// ObserveRateLimit passes the view of one answer to the limiter's source
// when it observes views; a view that is not Valid is dropped.
func (l *Limiter) ObserveRateLimit(v RateLimitView) {
	if !v.Valid() {
		return
	}
	if o, ok := l.src.(RateLimitObserver); ok {
		o.ObserveRateLimit(v)
	}
}
