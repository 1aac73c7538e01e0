package natsconn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// natsContext is the part of a natscli context file the reconciler uses.
// Other fields (nsc, jetstream_domain, colors) are ignored.
type natsContext struct {
	URL      string `json:"url"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	User     string `json:"user"`
	Password string `json:"password"`
	Token    string `json:"token"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
	TLSFirst bool   `json:"tls_first"`
}

func (c natsContext) field(name string) string {
	switch name {
	case "creds":
		return c.Creds
	case "nkey":
		return c.NKey
	case "user":
		return c.User
	case "password":
		return c.Password
	case "token":
		return c.Token
	case "cert":
		return c.Cert
	case "key":
		return c.Key
	case "ca":
		return c.CA
	}
	return ""
}

// contextDir is where natscli keeps its contexts.
func contextDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "nats", "context"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "nats", "context"), nil
}

// loadContext reads a context by name, or by path when nameOrPath holds a
// path separator or ends in .json.
func loadContext(nameOrPath string) (natsContext, string, error) {
	path := nameOrPath
	if !strings.ContainsRune(nameOrPath, filepath.Separator) && !strings.HasSuffix(nameOrPath, ".json") {
		dir, err := contextDir()
		if err != nil {
			return natsContext{}, "", fmt.Errorf("context %q: finding the natscli context directory: %w", nameOrPath, err)
		}
		path = filepath.Join(dir, nameOrPath+".json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return natsContext{}, path, fmt.Errorf("context %q: %s does not exist (list contexts with `nats context ls`)", nameOrPath, path)
		}
		return natsContext{}, path, fmt.Errorf("context %q: %w", nameOrPath, err)
	}
	var c natsContext
	if err := json.Unmarshal(b, &c); err != nil {
		// Neither the syntax error nor the type error quotes the file's
		// values, so no secret of the file is shown.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return c, path, fmt.Errorf("%s:%d: %v", path, lineOf(b, se.Offset), se)
		case errors.As(err, &te):
			return c, path, fmt.Errorf("%s:%d: field %q: want a %s, got a JSON %s", path, lineOf(b, te.Offset), te.Field, te.Type, te.Value)
		}
		return c, path, fmt.Errorf("%s: %w", path, err)
	}
	return c, path, nil
}

// lineOf returns the 1-based line of a byte offset.
func lineOf(b []byte, off int64) int {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	return bytes.Count(b[:off], []byte("\n")) + 1
}

// expandHome expands a leading "~/" as natscli does for file fields.
func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return p
}
