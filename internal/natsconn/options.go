package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Options are the credentials and TLS settings of a NATS connection. The
// zero value connects without authentication.
type Options struct {
	// Context names a natscli context (a file NAME.json in
	// $XDG_CONFIG_HOME/nats/context or ~/.config/nats/context), or is the
	// path of such a file.
	Context string
	// Creds is a .creds file: a user JWT and its NKey seed.
	Creds string
	// NKey is a file holding an NKey user seed.
	NKey string
	// User and Password authenticate with a user name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLSCert and TLSKey are the client certificate and its key (PEM).
	TLSCert, TLSKey string
	// TLSCA is a PEM file of CA certificates trusted for the server;
	// empty means the system roots.
	TLSCA string
	// TLSFirst performs the TLS handshake before the NATS greeting (a
	// natscli context's tls_first).
	TLSFirst bool

	// contextURL is the URL of the context, read by Resolve.
	contextURL string
	// from names the flag or context field that set each option, for
	// error messages.
	from map[string]string
}

// option names: the flag, its aliases, and its variable.
type option struct {
	flag    string
	aliases []string
	env     string
	field   func(*Options) *string
	usage   string
	context string // the natscli context field
}

var optionTable = []option{
	{"nats-context", nil, "NATS_CONTEXT", func(o *Options) *string { return &o.Context }, "natscli context to read the URL and credentials from (a name in ~/.config/nats/context, or a path to its JSON file)", ""},
	{"nats-creds", nil, "NATS_CREDS", func(o *Options) *string { return &o.Creds }, "NATS credentials file (.creds: user JWT and NKey seed)", "creds"},
	{"nats-nkey", nil, "NATS_NKEY", func(o *Options) *string { return &o.NKey }, "file holding a NATS NKey user seed", "nkey"},
	{"nats-user", nil, "NATS_USER", func(o *Options) *string { return &o.User }, "NATS user name", "user"},
	{"nats-password", nil, "NATS_PASSWORD", func(o *Options) *string { return &o.Password }, "NATS password (prefer the variable to the flag: flags show in ps)", "password"},
	{"nats-token", nil, "NATS_TOKEN", func(o *Options) *string { return &o.Token }, "NATS authentication token (prefer the variable to the flag)", "token"},
	{"tlscert", []string{"nats-tls-cert"}, "NATS_CERT", func(o *Options) *string { return &o.TLSCert }, "client TLS certificate (PEM) for NATS", "cert"},
	{"tlskey", []string{"nats-tls-key"}, "NATS_KEY", func(o *Options) *string { return &o.TLSKey }, "client TLS private key (PEM) for NATS", "key"},
	{"tlsca", []string{"nats-tls-ca"}, "NATS_CA", func(o *Options) *string { return &o.TLSCA }, "CA certificates (PEM) that sign the NATS server's certificate; empty = system roots", "ca"},
}

// FlagNames returns every flag name Register adds, aliases included.
func FlagNames() []string {
	var out []string
	for _, op := range optionTable {
		out = append(out, op.flag)
		out = append(out, op.aliases...)
	}
	return out
}

// Register adds the options to fs as flags; each flag's default is its
// environment variable read through getenv (nil means os.Getenv).
func (o *Options) Register(fs *flag.FlagSet, getenv func(string) string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, op := range optionTable {
		p := op.field(o)
		def := getenv(op.env)
		fs.StringVar(p, op.flag, def, op.usage+" (env "+op.env+")")
		for _, a := range op.aliases {
			fs.StringVar(p, a, def, "same as --"+op.flag)
		}
	}
}

// name returns how an option is shown in errors: the flag and its
// variable, or the context field that set it.
func (o *Options) name(flagName string) string {
	if f, ok := o.from[flagName]; ok {
		return f
	}
	for _, op := range optionTable {
		if op.flag == flagName {
			return "--" + op.flag + " (" + op.env + ")"
		}
	}
	return "--" + flagName
}

// Resolve applies the natscli context, if any, and returns the URL to dial
// (url, or the context's URL when url is empty) and the options with every
// field the context sets and o leaves empty filled in. The URL is empty
// when neither gives one.
func (o Options) Resolve(url string) (string, Options, error) {
	out := o
	out.from = map[string]string{}
	if o.Context == "" {
		return url, out, nil
	}
	c, path, err := loadContext(o.Context)
	if err != nil {
		return "", out, fmt.Errorf("%s: %w", o.name("nats-context"), err)
	}
	for _, op := range optionTable {
		if op.context == "" {
			continue
		}
		p := op.field(&out)
		if v := c.field(op.context); *p == "" && v != "" {
			*p = expandHome(v)
			out.from[op.flag] = fmt.Sprintf("%q of the natscli context %s", op.context, path)
		}
	}
	out.TLSFirst = out.TLSFirst || c.TLSFirst
	out.contextURL = c.URL
	if url == "" {
		url = c.URL
	}
	return url, out, nil
}

// Validate checks that the options go together, without reading files.
func (o Options) Validate() error {
	auth := []string{}
	if o.Creds != "" {
		auth = append(auth, "nats-creds")
	}
	if o.NKey != "" {
		auth = append(auth, "nats-nkey")
	}
	if o.User != "" {
		auth = append(auth, "nats-user")
	}
	if o.Token != "" {
		auth = append(auth, "nats-token")
	}
	if len(auth) > 1 {
		return fmt.Errorf("%s and %s: give one way to authenticate", o.name(auth[0]), o.name(auth[1]))
	}
	if o.Password != "" && o.User == "" {
		return fmt.Errorf("%s is set but %s is empty", o.name("nats-password"), o.name("nats-user"))
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return fmt.Errorf("%s and %s: give both or neither", o.name("tlscert"), o.name("tlskey"))
	}
	return nil
}

// Authenticates reports whether the options carry any credential.
func (o Options) Authenticates() bool {
	return o.Creds != "" || o.NKey != "" || o.User != "" || o.Token != "" || o.TLSCert != ""
}

// NATSOptions checks the files the options name and returns the nats.go
// options that authenticate and set up TLS. Call it on the Options that
// Resolve returned.
func (o Options) NATSOptions() ([]nats.Option, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	switch {
	case o.Creds != "":
		if err := checkCreds(o.Creds); err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.name("nats-creds"), o.Creds, err)
		}
		opts = append(opts, nats.UserCredentials(o.Creds))
	case o.NKey != "":
		opt, err := nkeyOption(o.NKey)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.name("nats-nkey"), o.NKey, err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	tc, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	if o.TLSFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	return opts, nil
}

// tlsConfig returns the TLS configuration, or nil when no TLS option is
// set (a tls:// URL then still uses TLS with the system roots).
func (o Options) tlsConfig() (*tls.Config, error) {
	if o.TLSCA == "" && o.TLSCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.name("tlsca"), err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s: no PEM certificate in the file", o.name("tlsca"), o.TLSCA)
		}
		tc.RootCAs = pool
	}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			// The error of LoadX509KeyPair never holds key material.
			return nil, fmt.Errorf("%s %s with %s %s: %w", o.name("tlscert"), o.TLSCert, o.name("tlskey"), o.TLSKey, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// checkCreds checks that a .creds file holds a user JWT and a user seed.
func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return errors.Unwrap(err) // the path is in the caller's message
	}
	defer wipe(b)
	jwt, err := nkeys.ParseDecoratedJWT(b)
	if err != nil || jwt == "" || strings.Count(jwt, ".") != 2 {
		return errors.New("no user JWT in the file (want the -----BEGIN NATS USER JWT----- block of `nsc generate creds`)")
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return errors.New("no user NKey seed in the file (want the -----BEGIN USER NKEY SEED----- block)")
	}
	kp.Wipe()
	return nil
}

// nkeyOption reads a user seed file and returns the option that signs the
// server's nonce with it.
func nkeyOption(path string) (nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	defer wipe(b)
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, errors.New("no NKey seed in the file (want a line starting with SU)")
	}
	defer kp.Wipe()
	if seed, err := kp.Seed(); err != nil || len(seed) < 2 || seed[1] != 'U' {
		return nil, errors.New("the seed is not a user seed (want one starting with SU)")
	}
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, errors.New("nats.go cannot read the seed")
	}
	return opt, nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}

// RedactURL hides the user information of a NATS URL, or of each URL of a
// comma-separated list.
func RedactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, u := range parts {
		u = strings.TrimSpace(u)
		pu, err := url.Parse(u)
		switch {
		case err != nil && strings.Contains(u, "@"):
			parts[i] = "***@" + u[strings.LastIndex(u, "@")+1:]
		case err == nil && pu.User != nil:
			pu.User = nil
			parts[i] = strings.Replace(pu.String(), "://", "://***@", 1)
		default:
			parts[i] = u
		}
	}
	return strings.Join(parts, ",")
}
