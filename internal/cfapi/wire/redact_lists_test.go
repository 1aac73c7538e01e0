package wire

import "testing"

// TestRedactJSONBindingLists (chaos suite, bad input): the elements of an
// event's "bindings" and "upsert" lists are bindings whatever they look
// like. A secret binding whose type was left out, or a secret put in the
// list as a bare string, reached the dead-letter stream in clear when only
// objects with a type member were treated as bindings.
func TestRedactJSONBindingLists(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"binding without a type keeps only its name",
			`{"op":"patch","upsert":[{"name":"STRIPE_KEY","text":"hunter2"}]}`,
			`{"op":"patch","upsert":[{"name":"STRIPE_KEY","text":"<redacted>"}]}`},
		{"a bare string in the list",
			`{"op":"patch","upsert":["hunter2",7,null]}`,
			`{"op":"patch","upsert":["<redacted>","<redacted>","<redacted>"]}`},
		{"a list that is an object is hidden whole",
			`{"op":"patch","Upsert":{"S":{"name":"S","text":"hunter2"}}}`,
			`{"op":"patch","Upsert":"<redacted>"}`},
		{"replace bindings: typed elements follow the usual rule",
			`{"op":"replace","BINDINGS":[{"type":"plain_text","name":"A","text":"a"},{"type":"secret_text","name":"S","text":"hunter2"},{"Name":"N","value":"hunter2"}]}`,
			`{"op":"replace","BINDINGS":[{"type":"plain_text","name":"A","text":"a"},{"type":"secret_text","name":"S","text":"<redacted>"},{"Name":"N","value":"<redacted>"}]}`},
		{"null and empty lists stay",
			`{"bindings":null,"upsert":[]}`,
			`{"bindings":null,"upsert":[]}`},
		{"remove is names, kept",
			`{"remove":["A","B"]}`,
			`{"remove":["A","B"]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := RedactJSON([]byte(c.in))
			if !ok || string(got) != c.want {
				t.Fatalf("RedactJSON(%s)\n got %s (ok=%t)\nwant %s", c.in, got, ok, c.want)
			}
		})
	}
}
