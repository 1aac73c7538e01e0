package wire

import (
	"errors"
	"testing"
)

// TestCanonicalJSON pins the bytes of CanonicalJSON: value fingerprints
// (and so every stored last-applied record) depend on them. The expected
// strings were produced by the implementation the records were written
// with; a change here makes every secret look changed once.
func TestCanonicalJSON(t *testing.T) {
	cases := []struct {
		b    Binding
		want string
	}{
		{MustParseBinding(`{"type":"secret_text","name":"S","text":"a<b>&\"c\"\u2028é"}`),
			`{"name":"S","type":"secret_text","value":{},"write_only":{"text":"a<b>&\"c\"\u2028é"}}`},
		{MustParseBinding(`{"type":"secret_text","name":"S2","text":null}`),
			`{"name":"S2","type":"secret_text","value":{},"write_only":{"text":null}}`},
		{MustParseBinding(`{"type":"secret_text","name":"S3"}`),
			`{"name":"S3","type":"secret_text","value":{},"write_only":{}}`},
		{MustParseBinding(`{"type":"secret_key","name":"K","algorithm":{"name":"HMAC","hash":"SHA-256"},"format":"jwk","usages":["sign"],"key_jwk":{"k":"x","kty":"oct"}}`),
			`{"name":"K","type":"secret_key","value":{"algorithm":{"hash":"SHA-256","name":"HMAC"},"format":"jwk","usages":["sign"]},"write_only":{"key_jwk":{"k":"x","kty":"oct"}}}`},
		{MustParseBinding(`{"type":"d1","name":"DB","id":"x"}`), `{"name":"DB","type":"d1","value":{"database_id":"x"}}`},
		{MustParseBinding(`{"type":"service","name":"SVC","service":"a"}`),
			`{"name":"SVC","type":"service","value":{"environment":"production","service":"a"}}`},
		{MustParseBinding(`{"type":"stream","name":"Ä<x>","weird key":{"b":1,"a":[1.50,"\u00e9"]}}`),
			`{"name":"Ä\u003cx\u003e","type":"stream","value":{"weird key":{"a":[1.50,"é"],"b":1}}}`},
		{MustParseBinding(`{"type":"plain_text","name":"P","text":"tab\there"}`), `{"name":"P","type":"plain_text","value":{"text":"tab\there"}}`},
		{Ref(TypeSecretText, "R"), `{"name":"R","type":"secret_text","value":{},"write_only":{}}`},
		{Ref("kv_namespace", "R2"), `{"name":"R2","type":"kv_namespace","value":{}}`},
		{Inherit("I"), `{"name":"I","type":"inherit","value":{}}`},
		{Ref("x<y", "n\"m"), `{"name":"n\"m","type":"x\u003cy","value":{}}`},
	}
	for _, c := range cases {
		if got := string(c.b.CanonicalJSON()); got != c.want {
			t.Errorf("%s: CanonicalJSON\n got %s\nwant %s", c.b.Raw(), got, c.want)
		}
		got := c.b.AppendCanonicalJSON([]byte("prefix"))
		if string(got) != "prefix"+c.want {
			t.Errorf("%s: AppendCanonicalJSON\n got %s\nwant prefix%s", c.b.Raw(), got, c.want)
		}
	}
	if got := (Binding{}).AppendCanonicalJSON(nil); got != nil {
		t.Errorf("zero binding appended %q", got)
	}
	if got := (Binding{}).CanonicalJSON(); got != nil {
		t.Errorf("zero binding: %q", got)
	}
}

func TestAppendCanonicalJSONAllocs(t *testing.T) {
	b := MustParseBinding(`{"type":"secret_text","name":"API_KEY","text":"s3cr3t"}`)
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = b.AppendCanonicalJSON(buf[:0]) }); n != 0 {
		t.Errorf("AppendCanonicalJSON allocates %v times", n)
	}
}

func TestValidateCachedEqualsUncached(t *testing.T) {
	inputs := []string{
		`{"type":"kv_namespace","name":"KV","namespace_id":"x"}`,
		`{"type":"kv_namespace","name":"KV"}`,
		`{"type":"secret_text","name":"S"}`,
		`{"type":"secret_key","name":"K","algorithm":{},"format":"raw","usages":["sign"]}`,
		`{"type":"r2_bucket","name":"B","bucket_name":"b","jurisdiction":"mars"}`,
		`{"type":"plain_text","name":"1x","text":"a"}`,
		`{"type":"","name":"X"}`,
	}
	for _, s := range inputs {
		b := MustParseBinding(s)
		for _, mode := range []ValidateMode{ForUpload, ForRead} {
			got := b.Validate(mode)
			want := b.validate(mode, nil)
			if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
				t.Errorf("%s mode %d: cached %v, fresh %v", s, mode, got, want)
			}
			if got != nil {
				var ve *ValidationError
				if !errors.As(got, &ve) {
					t.Fatalf("not a *ValidationError: %T", got)
				}
				ve.Index = 99 // must not leak into the stored result
				if again := b.Validate(mode); again.(*ValidationError).Index != -1 {
					t.Errorf("stored result was modified through a returned error")
				}
			}
		}
	}
}
