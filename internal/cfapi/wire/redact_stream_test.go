package wire

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// redactSeeds returns documents to compare the streaming redaction with
// the reference one: the binding corpus, the bodies of the fuzz corpora
// of FuzzParseBinding and FuzzCheckResponse, and hand-written odd ones.
func redactSeeds(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	corpus, err := os.ReadFile("../testdata/bindings-corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, corpus)
	// FuzzCheckResponse's corpus belongs to internal/cfapi, the client.
	for _, dir := range []string{
		filepath.Join("testdata", "fuzz", "FuzzParseBinding"),
		filepath.Join("..", "testdata", "fuzz", "FuzzCheckResponse"),
		filepath.Join("testdata", "fuzz", "FuzzRedactJSON"),
	} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				if q, ok := strings.CutPrefix(line, "[]byte("); ok {
					s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
					if err != nil {
						t.Fatalf("%s: %v", f, err)
					}
					out = append(out, []byte(s))
				}
			}
		}
	}
	for _, s := range []string{
		`{"type":"secret_text","name":"S","text":"hunter2"}`,
		` { "a" : [ 1 , { "type" : "plain_text" , "name" : "A" , "text" : " x " } ] , "upsert" : [ "s" , { } , { "type" : "json" , "json" : { "type" : 1 } } ] } `,
		`{"\u0074ype":"secret_text","n\u0061me":"S","text":"hunter2","\ud800":1}`,
		`{"a":{"b":{"c":{"type":"secret_text","x":{"y":{"type":"plain_text"}},"type":"plain_text"}}}}`,
		"{\"k\xff\":\"v\xff\",\"type\":\"plain_text\",\"k\xfe\":1}",
		"{\"k\xff\":\"v\xff\",\"o\":{\"type\":\"my\xff\",\"k\xfe\":1}}",
		`{"type":"plain_text","type":{"a":[{"type":"secret_text"}]},"name":"N"}`,
		`{"BINDINGS":{"x":[{"type":"plain_text"}]},"upſert":[1],"bindinGs":null,"upsert":true}`,
		`[[[[{"type":"json","json":[[{}]]}]]],{"x":{}},{"type":"inherit","name":"I"}]`,
		"{\"k\u2028\":\"\u2028\",\"<&>\":{\"type\":\"x\",\"name\":\"\u2028\"}}",
		`"just a string"`, `12.5e3`, `null`, `[]`, `{}`,
	} {
		out = append(out, []byte(s))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		out = append(out, randomDocument(rng, 6))
	}
	return out
}

// randomDocument returns a random JSON value nested at most depth levels,
// rich in type, name and bindings keys.
func randomDocument(rng *rand.Rand, depth int) []byte {
	keys := []string{"type", "Type", "name", "NAME", "bindings", "upsert", "text", "json", "x", "t\\u0079pe"}
	types := []string{`"plain_text"`, `"secret_text"`, `"json"`, `"kv_namespace"`, `"my_secret"`, `5`, `null`, `"PLAIN_TEXT"`}
	var b []byte
	var gen func(d int)
	gen = func(d int) {
		switch k := rng.IntN(7); {
		case d == 0 || k < 2:
			b = append(b, []string{`1`, `"s"`, `true`, `null`, `" sp "`, "\"\xff\""}[rng.IntN(6)]...)
		case k < 4:
			b = append(b, '[')
			for i := range rng.IntN(4) {
				if i > 0 {
					b = append(b, ',', ' ')
				}
				gen(d - 1)
			}
			b = append(b, ']')
		default:
			b = append(b, '{')
			for i := range rng.IntN(5) {
				if i > 0 {
					b = append(b, ',')
				}
				k := keys[rng.IntN(len(keys))]
				b = append(b, '"')
				b = append(b, k...)
				b = append(b, '"', ':', ' ')
				if strings.EqualFold(k, "type") && rng.IntN(3) > 0 {
					b = append(b, types[rng.IntN(len(types))]...)
				} else {
					gen(d - 1)
				}
			}
			b = append(b, '}')
		}
	}
	gen(depth)
	return b
}

// TestRedactJSONMatchesReference: the streaming redaction gives, byte for
// byte, the reference redaction's output (or both refuse the input).
func TestRedactJSONMatchesReference(t *testing.T) {
	seeds := redactSeeds(t)
	if len(seeds) < 400 {
		t.Fatalf("only %d seeds", len(seeds))
	}
	for _, in := range seeds {
		checkRedactMatches(t, in)
	}
}

func checkRedactMatches(t *testing.T, in []byte) {
	t.Helper()
	for _, ph := range []string{Redacted, "(sensitive)"} {
		got, gotOK := RedactJSONWith(in, ph)
		want, wantOK := oldRedactJSONWith(in, ph)
		if gotOK != wantOK || !bytes.Equal(got, want) {
			t.Fatalf("RedactJSONWith(%q, %q)\n got %q (%t)\nwant %q (%t)", in, ph, got, gotOK, want, wantOK)
		}
	}
}

// FuzzRedactJSON compares the streaming redaction with the reference one
// on arbitrary input.
func FuzzRedactJSON(f *testing.F) {
	for _, s := range redactSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRedactMatches(t, data)
	})
}

// deepEvent returns an event of about size bytes whose patch member x is
// one string inside depth nested arrays (depth+1 levels with the event).
func deepEvent(size, depth int) []byte {
	head := `{"schema":"bindings.change/v1","op":"patch","upsert":[{"type":"secret_text","name":"S","text":"t"}],"x":`
	pad := size - len(head) - 2*depth - 3
	var b bytes.Buffer
	b.WriteString(head)
	b.WriteString(strings.Repeat("[", depth))
	b.WriteString(`"` + strings.Repeat("A", pad) + `"`)
	b.WriteString(strings.Repeat("]", depth))
	b.WriteString("}")
	return b.Bytes()
}

// TestRedactJSONMemoryIsBoundedByInput: redacting the worst event at the
// size limit (one string nested at the depth limit, and far beyond it)
// allocates a small multiple of the event, however deep. The reference
// redaction allocated depth × size (about 1 GiB at depth 1,000).
func TestRedactJSONMemoryIsBoundedByInput(t *testing.T) {
	const size = 1 << 20
	for _, depth := range []int{1, MaxJSONDepth - 1, MaxJSONDepth, 1000, 9000} {
		in := deepEvent(size, depth)
		total, peak := measureAlloc(func() {
			out, ok := RedactJSON(in)
			if !ok || len(out) < len(in) || !bytes.HasSuffix(out, []byte("]}")) {
				t.Fatalf("depth %d: RedactJSON failed", depth)
			}
		})
		t.Logf("depth %5d, %d bytes: TotalAlloc +%.2f MiB (%.2f× input), HeapInuse +%.2f MiB",
			depth, len(in), float64(total)/(1<<20), float64(total)/float64(len(in)), float64(peak)/(1<<20))
		if total > 3*uint64(len(in)) {
			t.Errorf("depth %d: redacting %d bytes allocated %d bytes, over 3× the input", depth, len(in), total)
		}
	}
}

// measureAlloc runs fn and returns the bytes it allocated and how much
// the heap in use grew while its result was still referenced.
func measureAlloc(fn func()) (total, heapGrowth uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	if after.HeapInuse > before.HeapInuse {
		heapGrowth = after.HeapInuse - before.HeapInuse
	}
	return after.TotalAlloc - before.TotalAlloc, heapGrowth
}

// BenchmarkRedactJSONDeep redacts the worst event at the size limit: one
// string nested at the depth limit, and far beyond it.
func BenchmarkRedactJSONDeep(b *testing.B) {
	for _, depth := range []int{MaxJSONDepth - 1, 1000, 9000} {
		in := deepEvent(1<<20, depth)
		b.Run("depth="+strconv.Itoa(depth), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := RedactJSON(in); !ok {
					b.Fatal("RedactJSON failed")
				}
			}
		})
	}
}
