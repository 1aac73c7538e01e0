package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/logging"
	"github.com/reconciler/reconciler/internal/natsconn"
)

// failedError is a run that finished with failures: exit code 1.
type failedError struct{ msg string }

func (e *failedError) Error() string { return e.msg }

// changesPendingError ends a preview run with --detailed-exitcode that
// would change something: exit code 2, no message.
type changesPendingError struct{}

func (changesPendingError) Error() string { return "changes pending" }

var errChangesPending error = changesPendingError{}

// isSecretFlag reports whether a flag's value is a secret: its default
// (read from the environment) never shows in the help.
func isSecretFlag(name string) bool { return name == "nats-password" || name == "nats-token" }

// registerConnFlags adds the NATS credential and TLS flags of natsconn;
// its aliases (such as --nats-tls-cert for --tlscert) stay out of the
// help.
func registerConnFlags(f *clihelp.Flags, o *natsconn.Options) {
	gfs := flag.NewFlagSet(f.Command, flag.ContinueOnError)
	o.Register(gfs, f.Env)
	f.AddGoFlags(gfs, isSecretFlag)
}

// natsFlags say where the event pipeline is.
type natsFlags struct {
	url            string
	dataDir        string
	embeddedListen string
	subjectPrefix  string
	// conn is the credentials and TLS of the connection.
	conn natsconn.Options
}

func (n *natsFlags) register(f *clihelp.Flags) {
	f.InGroup(groupNATS, func() {
		f.Str(&n.url, "nats-url", "NATS_URL", "", "NATS server URL(s), comma-separated; empty = the embedded JetStream server (in --data-dir for run)")
		f.Str(&n.dataDir, "data-dir", "RECONCILER_DATA_DIR", "./reconciler-data", "store of the embedded NATS server")
		f.Str(&n.embeddedListen, "embedded-listen", "RECONCILER_EMBEDDED_LISTEN", natsembed.DefaultListen, "where the embedded NATS server listens (host:port)")
		f.Str(&n.subjectPrefix, "subject-prefix", "RECONCILER_SUBJECT_PREFIX", "bindings", "event subject prefix")
		registerConnFlags(f, &n.conn)
	})
}

func (n *natsFlags) validate(f *clihelp.Flags) error {
	if n.subjectPrefix == "" || strings.ContainsAny(n.subjectPrefix, ".*> \t") {
		return clihelp.Usagef("%s: must be one subject token (no dots, wildcards or spaces), got %q", f.Label("subject-prefix"), n.subjectPrefix)
	}
	if err := n.conn.Validate(); err != nil {
		return clihelp.Usagef("%v", err)
	}
	if n.url == "" && n.dataDir == "" {
		return clihelp.Usagef("%s: needed for the embedded NATS server when --nats-url is empty", f.Label("data-dir"))
	}
	return nil
}

// names returns the JetStream resource names.
func (n *natsFlags) names() state.Names {
	return state.Names{SubjectPrefix: n.subjectPrefix}.WithDefaults()
}

// apiFlags say how to reach the Cloudflare API.
type apiFlags struct {
	baseURL   string
	rateLimit string
	maxWrites int

	budget int
	window time.Duration

	// The user's budget (ratelimit_flags.go).
	rateAuto    bool    // --rate-limit auto
	rateReserve string  // --rate-reserve
	reserveN    int     // ... as requests, or
	reserveFrac float64 // ... as a fraction of the quota
	budgetKey   string  // --budget-key
	localBudget bool    // --local-budget
}

// register registers the API flags of a command that spends the shared
// budget: the endpoint and the budget.
func (a *apiFlags) register(f *clihelp.Flags) {
	f.InGroup(groupAPI, func() {
		a.registerEndpoint(f)
		a.registerUserBudget(f)
	})
}

// registerEndpoint registers where the API is and how fast a process may
// call it, for a command with a budget of its own (doctor).
func (a *apiFlags) registerEndpoint(f *clihelp.Flags) {
	f.InGroup(groupAPI, func() {
		f.Str(&a.baseURL, "api-base-url", "CLOUDFLARE_API_BASE_URL", cfapi.DefaultBaseURL, "Cloudflare API base URL")
		f.Str(&a.rateLimit, "rate-limit", "RECONCILER_RATE_LIMIT", ratelimit.DefaultRateLimitString, "request budget of the API token, REQUESTS/DURATION, shared by every process using the token")
		f.Int(&a.maxWrites, "max-writes", "RECONCILER_MAX_WRITES", ratelimit.DefaultMaxWrites, "API writes in flight at once")
	})
}

func (a *apiFlags) validate(f *clihelp.Flags) error {
	if err := a.validateEndpoint(f); err != nil {
		return err
	}
	return a.validateUserBudget(f)
}

// validateEndpoint checks the flags of registerEndpoint.
func (a *apiFlags) validateEndpoint(f *clihelp.Flags) error {
	var err error
	if a.rateAuto = strings.TrimSpace(a.rateLimit) == rateLimitAuto; a.rateAuto {
		a.budget, a.window = autoStartBudget, ratelimit.DefaultWindow
	} else if a.budget, a.window, err = ratelimit.ParseRate(a.rateLimit); err != nil {
		return clihelp.Usagef("%s: %v (or %q to follow the API's Ratelimit-Policy)", f.Label("rate-limit"), err, rateLimitAuto)
	}
	if a.maxWrites < 1 || a.maxWrites > 256 {
		return clihelp.Usagef("%s: must be between 1 and 256, got %d", f.Label("max-writes"), a.maxWrites)
	}
	return nil
}

// logFlags shape the log.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(f *clihelp.Flags) {
	f.InGroup(groupLog, func() {
		f.Str(&l.format, "log-format", "RECONCILER_LOG_FORMAT", "auto", "log format: console, json, or auto (console on a terminal, json otherwise)")
		f.Str(&l.level, "log-level", "RECONCILER_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	})
}

func (l *logFlags) validate(f *clihelp.Flags) error {
	switch l.format {
	case "auto", "json", "console":
	default:
		return clihelp.Usagef("%s: must be console, json or auto, got %q", f.Label("log-format"), l.format)
	}
	if _, err := zapcore.ParseLevel(l.level); err != nil {
		return clihelp.Usagef("%s: %v", f.Label("log-level"), err)
	}
	return nil
}

// logger builds the process logger (internal/logging).
func (l *logFlags) logger(stderr io.Writer) *zap.Logger {
	return logging.New(l.format, l.level, stderr)
}

// credentials reads the API credentials from the environment
// (cfapi.CredentialsFromEnv); what is missing is a usage error.
func credentials(e clihelp.Env, baseURL string) (cfapi.Credentials, error) {
	c, err := cfapi.CredentialsFromEnv(e, baseURL)
	if err != nil {
		return c, clihelp.Usagef("%v", err)
	}
	return c, nil
}

// osEnv reads the real environment.
func osEnv(k string) string { return os.Getenv(k) }
