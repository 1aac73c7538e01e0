package cfapi

import "fmt"

// MaxNamespaceNameLength is the longest dispatch namespace name
// ValidateNamespaceName accepts.
const MaxNamespaceNameLength = 63

// OrdinaryNamespaceToken is the namespace token of an ordinary
// account-level Worker in subjects and keys (<account>.<namespace>.<script>).
// No dispatch namespace may be named so, or its user Workers would share
// keys with the account's ordinary Workers of the same names.
const OrdinaryNamespaceToken = "_"

// ValidateNamespaceName checks the name of a Workers for Platforms
// dispatch namespace as events and flags carry it. The API's schema asks
// only for a non-empty string; the reconciler, which puts the name in NATS
// subjects, keys and URL paths, accepts 1 to 63 lowercase letters, digits,
// '-' and '_', starting with a letter or a digit. That rules out "_" (the
// token of ordinary Workers, see OrdinaryNamespaceToken) and any name that
// only looks like it, '.', '*' and '>' (NATS token separators and
// wildcards), '/' and '%' (path segments), spaces and capitals. The error
// names the first offending character and its position.
func ValidateNamespaceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("dispatch namespace name is empty")
	case name == OrdinaryNamespaceToken:
		return fmt.Errorf("dispatch namespace name %q is the token of ordinary Workers", name)
	case len(name) > MaxNamespaceNameLength:
		return fmt.Errorf("dispatch namespace name %q is %d bytes, over the limit of %d",
			Truncate(name, 64), len(name), MaxNamespaceNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		lowerOrDigit := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if i == 0 && !lowerOrDigit {
			return fmt.Errorf("dispatch namespace name %q must start with a lowercase letter or a digit, not %q", name, c)
		}
		if !lowerOrDigit && c != '-' && c != '_' {
			return fmt.Errorf("dispatch namespace name %q: character %q at byte %d is not a lowercase letter, a digit, '-' or '_'",
				Truncate(name, 64), c, i)
		}
	}
	return nil
}
