package natsconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// startServer starts a real NATS server on a random loopback port.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("starting nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// connect connects and checks a round trip.
func connect(t *testing.T, o Options, url string) error {
	t.Helper()
	nc, err := o.Connect(url, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

// mustFail checks that err names want and holds none of secrets.
func mustFail(t *testing.T, err error, want string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("connected; want an error naming %s", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds the secret %q", err, s)
		}
	}
}

func TestUserPassword(t *testing.T) {
	s := startServer(t, &server.Options{Username: "reconciler", Password: "s3cr3t-pw"})
	if err := connect(t, Options{User: "reconciler", Password: "s3cr3t-pw"}, s.ClientURL()); err != nil {
		t.Fatalf("right password: %v", err)
	}
	err := connect(t, Options{User: "reconciler", Password: "wrong-pw-123"}, s.ClientURL())
	mustFail(t, err, "--nats-password (NATS_PASSWORD)", "wrong-pw-123", "s3cr3t-pw")
	// The password in the URL is redacted from the error too.
	u := strings.Replace(s.ClientURL(), "nats://", "nats://reconciler:url-pw-999@", 1)
	err = connect(t, Options{}, u)
	mustFail(t, err, "NATS URL (--nats-url, NATS_URL)", "url-pw-999")
	if !strings.Contains(err.Error(), "nats://***@127.0.0.1") {
		t.Errorf("error %q does not show the redacted URL", err)
	}
	err = connect(t, Options{}, s.ClientURL())
	mustFail(t, err, "needs credentials")
}

func TestToken(t *testing.T) {
	s := startServer(t, &server.Options{Authorization: "tok-right-42"})
	if err := connect(t, Options{Token: "tok-right-42"}, s.ClientURL()); err != nil {
		t.Fatalf("right token: %v", err)
	}
	mustFail(t, connect(t, Options{Token: "tok-wrong-17"}, s.ClientURL()), "--nats-token (NATS_TOKEN)", "tok-wrong-17", "tok-right-42")
}

func userSeedFile(t *testing.T) (string, string, []byte) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	return writeFile(t, "user.nk", append(append([]byte{}, seed...), '\n')), pub, seed
}

func TestNKey(t *testing.T) {
	path, pub, seed := userSeedFile(t)
	s := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err := connect(t, Options{NKey: path}, s.ClientURL()); err != nil {
		t.Fatalf("right nkey: %v", err)
	}
	other, _, otherSeed := userSeedFile(t)
	mustFail(t, connect(t, Options{NKey: other}, s.ClientURL()), "--nats-nkey (NATS_NKEY) "+other, string(seed), string(otherSeed))

	bad := writeFile(t, "bad.nk", []byte("not a seed\n"))
	mustFail(t, connect(t, Options{NKey: bad}, s.ClientURL()), "--nats-nkey (NATS_NKEY) "+bad+": no NKey seed")
	mustFail(t, connect(t, Options{NKey: filepath.Join(t.TempDir(), "absent.nk")}, s.ClientURL()), "--nats-nkey (NATS_NKEY)")
}

// operator mints an operator, an account in a memory resolver and a user
// .creds file, as `nsc` would.
type operator struct {
	claims  *jwt.OperatorClaims
	opKP    nkeys.KeyPair
	accKP   nkeys.KeyPair
	accJWT  string
	accPub  string
	resolve *server.MemAccResolver
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	o := &operator{resolve: &server.MemAccResolver{}}
	var err error
	if o.opKP, err = nkeys.CreateOperator(); err != nil {
		t.Fatal(err)
	}
	opPub, _ := o.opKP.PublicKey()
	o.claims = jwt.NewOperatorClaims(opPub)
	o.claims.Name = "test-operator"
	opJWT, err := o.claims.Encode(o.opKP)
	if err != nil {
		t.Fatal(err)
	}
	if o.claims, err = jwt.DecodeOperatorClaims(opJWT); err != nil {
		t.Fatal(err)
	}
	if o.accKP, err = nkeys.CreateAccount(); err != nil {
		t.Fatal(err)
	}
	o.accPub, _ = o.accKP.PublicKey()
	ac := jwt.NewAccountClaims(o.accPub)
	ac.Name = "RECONCILER"
	if o.accJWT, err = ac.Encode(o.opKP); err != nil {
		t.Fatal(err)
	}
	if err := o.resolve.Store(o.accPub, o.accJWT); err != nil {
		t.Fatal(err)
	}
	return o
}

// creds returns a .creds file of a new user signed by signer, expiring
// at expires (0 = never).
func (o *operator) creds(t *testing.T, signer nkeys.KeyPair, expires int64) (string, []byte) {
	t.Helper()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "reconciler"
	uc.IssuerAccount = ""
	uc.Expires = expires
	ujwt, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	b, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.creds", b), seed
}

func TestOperatorModeCreds(t *testing.T) {
	op := newOperator(t)
	s := startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{op.claims}, AccountResolver: op.resolve})
	good, _ := op.creds(t, op.accKP, 0)
	if err := connect(t, Options{Creds: good}, s.ClientURL()); err != nil {
		t.Fatalf("valid creds: %v", err)
	}
	// A user signed by an account the operator does not know.
	stranger, _ := nkeys.CreateAccount()
	bad, seed := op.creds(t, stranger, 0)
	mustFail(t, connect(t, Options{Creds: bad}, s.ClientURL()), "--nats-creds (NATS_CREDS) "+bad, string(seed))
	// An expired user.
	expired, seed := op.creds(t, op.accKP, time.Now().Add(-time.Hour).Unix())
	mustFail(t, connect(t, Options{Creds: expired}, s.ClientURL()), "--nats-creds (NATS_CREDS) "+expired, string(seed))
	// A file that is not a .creds file.
	junk := writeFile(t, "junk.creds", []byte("hello\n"))
	mustFail(t, connect(t, Options{Creds: junk}, s.ClientURL()), "--nats-creds (NATS_CREDS) "+junk+": no user JWT")
}

// pki is a CA with a server and a client certificate.
type pki struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	caPool                                               *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &pki{caPool: x509.NewCertPool()}
	p.caPool.AddCert(caCert)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p.serverCert, p.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *pki) serverTLS(t *testing.T, verifyClients bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if verifyClients {
		tc.ClientCAs, tc.ClientAuth = p.caPool, tls.RequireAndVerifyClientCert
	}
	return tc
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, &server.Options{TLS: true, TLSConfig: p.serverTLS(t, false), Username: "u", Password: "tls-pw-1"})
	url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)
	if err := connect(t, Options{TLSCA: p.caFile, User: "u", Password: "tls-pw-1"}, url); err != nil {
		t.Fatalf("TLS with the CA: %v", err)
	}
	// Without the CA the server's certificate is unknown.
	mustFail(t, connect(t, Options{User: "u", Password: "tls-pw-1"}, url), "--tlsca", "tls-pw-1")
	other := newPKI(t)
	mustFail(t, connect(t, Options{TLSCA: other.caFile, User: "u", Password: "tls-pw-1"}, url), "TLS with --tlsca (NATS_CA) "+other.caFile, "tls-pw-1")
	notPEM := writeFile(t, "ca.pem", []byte("junk"))
	mustFail(t, connect(t, Options{TLSCA: notPEM}, url), "--tlsca (NATS_CA) "+notPEM+": no PEM certificate")
}

func TestTLSClientCertificate(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: p.serverTLS(t, true)})
	if err := connect(t, Options{TLSCA: p.caFile, TLSCert: p.clientCert, TLSKey: p.clientKey}, s.ClientURL()); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	// A client certificate from another CA is refused.
	other := newPKI(t)
	err := connect(t, Options{TLSCA: p.caFile, TLSCert: other.clientCert, TLSKey: other.clientKey}, s.ClientURL())
	if err == nil {
		t.Fatal("a certificate of another CA connected")
	}
	mustFail(t, connect(t, Options{TLSCA: p.caFile, TLSCert: p.clientCert}, s.ClientURL()), "--tlscert (NATS_CERT) and --tlskey (NATS_KEY)")
	mustFail(t, connect(t, Options{TLSCA: p.caFile, TLSCert: p.clientCert, TLSKey: p.caFile}, s.ClientURL()), "--tlskey (NATS_KEY) "+p.caFile)
}

func TestRegisterFlagsAndEnv(t *testing.T) {
	env := map[string]string{"NATS_CREDS": "/env.creds", "NATS_USER": "envuser", "NATS_CA": "/env-ca.pem"}
	var o Options
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o.Register(fs, func(k string) string { return env[k] })
	if err := fs.Parse([]string{"--nats-user", "flaguser", "--nats-tls-cert", "/c.pem", "--tlskey", "/k.pem"}); err != nil {
		t.Fatal(err)
	}
	want := Options{Creds: "/env.creds", User: "flaguser", TLSCA: "/env-ca.pem", TLSCert: "/c.pem", TLSKey: "/k.pem"}
	if o.Creds != want.Creds || o.User != want.User || o.TLSCA != want.TLSCA || o.TLSCert != want.TLSCert || o.TLSKey != want.TLSKey {
		t.Errorf("got %+v, want %+v", o, want)
	}
	mustFail(t, o.Validate(), "--nats-creds (NATS_CREDS) and --nats-user (NATS_USER)")
	for _, n := range FlagNames() {
		if fs.Lookup(n) == nil {
			t.Errorf("flag %s not registered", n)
		}
	}
}

func TestContext(t *testing.T) {
	s := startServer(t, &server.Options{Username: "ctxuser", Password: "ctx-pw-77"})
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	cdir := filepath.Join(dir, "nats", "context")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		t.Fatal(err)
	}
	body := `{"description":"prod","url":"` + s.ClientURL() + `","user":"ctxuser","password":"ctx-pw-77","nsc":"","jetstream_domain":""}`
	if err := os.WriteFile(filepath.Join(cdir, "prod.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, Options{Context: "prod"}, ""); err != nil {
		t.Fatalf("context: %v", err)
	}
	url, r, err := Options{Context: "prod", Password: "flag-pw"}.Resolve("nats://other:4222")
	if err != nil || url != "nats://other:4222" || r.Password != "flag-pw" || r.User != "ctxuser" {
		t.Errorf("flags must win over the context: url %q, %+v, %v", url, r, err)
	}
	// A wrong password from the context names the context field.
	bad := strings.Replace(body, "ctx-pw-77", "ctx-wrong-pw", 1)
	badPath := filepath.Join(cdir, "bad.json")
	if err := os.WriteFile(badPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, connect(t, Options{Context: "bad"}, ""), `"password" of the natscli context `+badPath, "ctx-wrong-pw")
	mustFail(t, connect(t, Options{Context: "absent"}, ""), "--nats-context (NATS_CONTEXT): context \"absent\"")
	broken := writeFile(t, "broken.json", []byte("{\n\"url\": \"nats://x\",\n\"password\": secret-in-broken\n}"))
	mustFail(t, connect(t, Options{Context: broken}, ""), broken+":3:", "secret-in-broken")
	typed := writeFile(t, "typed.json", []byte("{\n\"url\": 42\n}"))
	mustFail(t, connect(t, Options{Context: typed}, ""), typed+`:2: field "url"`)
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://u:p@h:4222":                "nats://***@h:4222",
		"nats://a:4222, nats://tok@b:4222": "nats://a:4222,nats://***@b:4222",
		"nats://h:4222":                    "nats://h:4222",
		"nats://u:p%zz@h:4222":             "***@h:4222",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
