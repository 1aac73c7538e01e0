package cfapi

import (
	"strings"
	"testing"
)

func TestValidateNamespaceName(t *testing.T) {
	cases := []struct {
		name  string
		inErr string // "" when the name is valid
	}{
		{"customers", ""},
		{"my-dispatch-namespace", ""},
		{"tenant_ns-2", ""},
		{"0prod", ""},
		{"a", ""},
		{strings.Repeat("n", MaxNamespaceNameLength), ""},
		{"", "empty"},
		{"_", "token of ordinary Workers"},
		{"__", "must start with a lowercase letter or a digit"},
		{"_x", "must start with a lowercase letter or a digit"},
		{"-x", "must start with a lowercase letter or a digit"},
		{strings.Repeat("n", MaxNamespaceNameLength+1), "64 bytes, over the limit of 63"},
		{"Customers", "must start with"},
		{"cusTomers", `'T' at byte 3`},
		{"a.b", `'.' at byte 1`},
		{"a*", `'*' at byte 1`},
		{"a>", `'>' at byte 1`},
		{"a/b", `'/' at byte 1`},
		{"a%2f", `'%' at byte 1`},
		{"a b", `' ' at byte 1`},
		{"é", "must start with"},
		{"ab\x00", `'\x00' at byte 2`},
	}
	for _, c := range cases {
		err := ValidateNamespaceName(c.name)
		switch {
		case c.inErr == "" && err != nil:
			t.Errorf("ValidateNamespaceName(%q) = %v, want nil", c.name, err)
		case c.inErr != "" && err == nil:
			t.Errorf("ValidateNamespaceName(%q) = nil, want an error saying %q", c.name, c.inErr)
		case err != nil && !strings.Contains(err.Error(), c.inErr):
			t.Errorf("ValidateNamespaceName(%q) = %v, want it to say %q", c.name, err, c.inErr)
		}
		if err != nil && !strings.Contains(err.Error(), "dispatch namespace name") {
			t.Errorf("error %v does not name the field", err)
		}
		if err == nil && ValidateScriptName(c.name) != nil {
			t.Errorf("%q is a valid namespace name but not a valid script name", c.name)
		}
	}
}
