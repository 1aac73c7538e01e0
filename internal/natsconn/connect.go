package natsconn

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// Connect resolves the context, checks the files and connects to url (a
// comma-separated list; empty means the context's URL, then
// nats.DefaultURL). Options in extra (name, handlers, reconnection) are
// applied after the credentials. A refused credential or a failed TLS
// handshake is an error naming the option behind it; a bad option found
// before dialling is a *ConfigError. No error holds a secret.
func (o Options) Connect(url string, extra ...nats.Option) (*nats.Conn, error) {
	url, r, err := o.Resolve(url)
	if err != nil {
		return nil, &ConfigError{err}
	}
	if url == "" {
		url = nats.DefaultURL
	}
	opts, err := r.NATSOptions()
	if err != nil {
		return nil, &ConfigError{err}
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", RedactURL(url), r.explain(err, RedactURL(url) != url))
	}
	return nc, nil
}

// explain names the option behind a connection error.
// urlAuth says the URL carries user information.
func (o Options) explain(err error, urlAuth bool) error {
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		strings.Contains(msg, "authorization violation") || strings.Contains(msg, "authentication"):
		if urlAuth && !o.Authenticates() {
			return fmt.Errorf("the server refused the user information of the NATS URL (--nats-url, NATS_URL): %w", err)
		}
		return fmt.Errorf("the server refused %s: %w", o.credentialName(), err)
	case strings.Contains(msg, "x509") || strings.Contains(msg, "tls"):
		return fmt.Errorf("TLS with %s: %w", o.tlsName(), err)
	}
	return err
}

// credentialName names the option that supplied the credential.
func (o Options) credentialName() string {
	switch {
	case o.Creds != "":
		return "the credentials of " + o.name("nats-creds") + " " + o.Creds
	case o.NKey != "":
		return "the NKey of " + o.name("nats-nkey") + " " + o.NKey
	case o.User != "":
		return fmt.Sprintf("user %q with %s", o.User, o.name("nats-password"))
	case o.Token != "":
		return "the token of " + o.name("nats-token")
	case o.TLSCert != "":
		return "the client certificate of " + o.name("tlscert") + " " + o.TLSCert
	}
	return "the connection: it needs credentials (--nats-creds, --nats-nkey, --nats-user, --nats-token or --nats-context)"
}

func (o Options) tlsName() string {
	var n []string
	if o.TLSCA != "" {
		n = append(n, o.name("tlsca")+" "+o.TLSCA)
	}
	if o.TLSCert != "" {
		n = append(n, o.name("tlscert")+" "+o.TLSCert)
	}
	if len(n) == 0 {
		return "the system roots (give the server's CA with --tlsca)"
	}
	return strings.Join(n, " and ")
}

// ConfigError is an option that is wrong before any dialling: a missing
// or malformed file, options that do not go together, a context that
// cannot be read. A command reports it as bad configuration.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }
