package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/progress"
)

// usageError is bad usage or configuration: exit code 2, with a message
// that names the flag or variable.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// failedError is a run that finished with failures: exit code 1.
type failedError struct{ msg string }

func (e *failedError) Error() string { return e.msg }

// changesPendingError ends a preview run with --detailed-exitcode that
// would change something: exit code 2, no message.
type changesPendingError struct{}

func (changesPendingError) Error() string { return "changes pending" }

var errChangesPending error = changesPendingError{}

// env is the process environment, replaceable in tests.
type env func(string) string

// flagSet is the flags of one command, with defaults from the
// environment: a flag wins over its variable and the variable over the
// default.
type flagSet struct {
	*pflag.FlagSet
	env     env
	errs    []error
	envFor  map[string]string // flag name -> variable
	pos     []string          // positional arguments, wherever they stood
	command string            // "dlq list", for messages
}

// newFlagSet returns a flag set of its own (not a command's), parsed with
// parse.
func newFlagSet(name string, e env, out io.Writer) *flagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(out)
	return wrapFlags(fs, name, e)
}

// commandFlags returns the flag set of cmd, whose defaults read e; cobra
// parses it.
func commandFlags(cmd *cobra.Command, e env) *flagSet {
	return wrapFlags(cmd.Flags(), cmd.Name(), e)
}

func wrapFlags(fs *pflag.FlagSet, name string, e env) *flagSet {
	fs.SortFlags = false // in the order registered: the groups, then the command's own
	return &flagSet{FlagSet: fs, env: e, envFor: map[string]string{}, command: name}
}

func (f *flagSet) str(p *string, name, envVar, def, usage string) {
	def, usage = envDefault(f, name, envVar, def, usage, func(v string) (string, error) { return v, nil }, "")
	f.StringVar(p, name, def, usage)
}

func (f *flagSet) integer(p *int, name, envVar string, def int, usage string) {
	def, usage = envDefault(f, name, envVar, def, usage, strconv.Atoi, "an integer")
	f.IntVar(p, name, def, usage)
}

func (f *flagSet) duration(p *time.Duration, name, envVar string, def time.Duration, usage string) {
	def, usage = envDefault(f, name, envVar, def, usage, time.ParseDuration, "a duration such as 30s or 5m")
	f.DurationVar(p, name, def, usage)
}

// alias registers old as a deprecated second spelling of the flag
// current, bound to the same variable p; using it prints a notice naming
// current. It stays in the help, marked deprecated.
func (f *flagSet) alias(old, current string) {
	cur := f.Lookup(current)
	if cur == nil {
		panic("alias of an unregistered flag --" + current) // a programming error, caught by every test
	}
	f.Var(cur.Value, old, "deprecated spelling of --"+current)
	fl := f.Lookup(old)
	fl.DefValue = cur.DefValue
	if cur.NoOptDefVal != "" {
		fl.NoOptDefVal = cur.NoOptDefVal
	}
	_ = f.MarkDeprecated(old, "use --"+current)
	fl.Hidden = false // shown in the help, so old scripts can be read
	if v, ok := f.envFor[current]; ok {
		f.envFor[old] = v
	}
}

// envDefault returns the default and usage of flag name when envVar ("" =
// none) may set it: the variable's value read by parse, or def when it is
// unset; a value parse refuses is kept for envErr to report (wanting
// want) and def stays.
func envDefault[T any](f *flagSet, name, envVar string, def T, usage string, parse func(string) (T, error), want string) (T, string) {
	if envVar == "" {
		return def, usage
	}
	f.envFor[name] = envVar
	if v := f.env(envVar); v != "" {
		if x, err := parse(v); err != nil {
			f.errs = append(f.errs, usagef("%s=%q: want %s", envVar, v, want))
		} else {
			def = x
		}
	}
	return def, usage + " (env " + envVar + ")"
}

// envErr returns the first environment variable whose value its flag
// refused.
func (f *flagSet) envErr() error {
	if len(f.errs) > 0 {
		return f.errs[0]
	}
	return nil
}

// noArgs refuses the positional arguments of a command that takes none;
// hint ("" = none) says what to give instead.
func (f *flagSet) noArgs(hint string) error {
	if len(f.pos) == 0 {
		return nil
	}
	if hint != "" {
		return usagef("%s takes no arguments, got %q (%s)", f.command, f.pos, hint)
	}
	return usagef("%s takes no arguments, got %q", f.command, f.pos)
}

// parse parses args (flags anywhere, everything after -- positional) and
// reports the first bad environment value; commands are parsed by cobra
// instead.
func (f *flagSet) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	f.pos = f.Args()
	return f.envErr()
}

// set reports whether the flag was given on the command line or through
// its variable.
func (f *flagSet) set(flagName string) bool {
	if f.Changed(flagName) {
		return true
	}
	v, ok := f.envFor[flagName]
	return ok && f.env(v) != ""
}

// name returns "--flag (or VAR)" for error messages.
func (f *flagSet) name(flagName string) string {
	if v, ok := f.envFor[flagName]; ok {
		return "--" + flagName + " (or " + v + ")"
	}
	return "--" + flagName
}

// isSecretFlag reports whether a flag's value is a secret: its default
// (read from the environment) never shows in the help.
func isSecretFlag(name string) bool { return name == "nats-password" || name == "nats-token" }

// registerConnFlags adds the NATS credential and TLS flags of natsconn;
// its aliases (such as --nats-tls-cert for --tlscert) stay out of the
// help.
func registerConnFlags(f *flagSet, o *natsconn.Options) {
	gfs := flag.NewFlagSet(f.command, flag.ContinueOnError)
	o.Register(gfs, f.env)
	primary := map[string]bool{}
	gfs.VisitAll(func(fl *flag.Flag) {
		if !strings.HasPrefix(fl.Usage, "same as --") {
			primary[fl.Name] = true
		}
	})
	f.AddGoFlagSet(gfs)
	gfs.VisitAll(func(gf *flag.Flag) {
		fl := f.Lookup(gf.Name)
		fl.Hidden = !primary[gf.Name]
		if isSecretFlag(gf.Name) {
			fl.DefValue = ""
		}
	})
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

func (n *natsFlags) register(f *flagSet) {
	f.inGroup(groupNATS, func() {
		f.str(&n.url, "nats-url", "NATS_URL", "", "NATS server URL(s), comma-separated; empty = the embedded JetStream server (in --data-dir for run)")
		f.str(&n.dataDir, "data-dir", "RECONCILER_DATA_DIR", "./reconciler-data", "store of the embedded NATS server")
		f.str(&n.embeddedListen, "embedded-listen", "RECONCILER_EMBEDDED_LISTEN", natsembed.DefaultListen, "where the embedded NATS server listens (host:port)")
		f.str(&n.subjectPrefix, "subject-prefix", "RECONCILER_SUBJECT_PREFIX", "bindings", "event subject prefix")
		registerConnFlags(f, &n.conn)
	})
}

func (n *natsFlags) validate(f *flagSet) error {
	if n.subjectPrefix == "" || strings.ContainsAny(n.subjectPrefix, ".*> \t") {
		return usagef("%s: must be one subject token (no dots, wildcards or spaces), got %q", f.name("subject-prefix"), n.subjectPrefix)
	}
	if err := n.conn.Validate(); err != nil {
		return usagef("%v", err)
	}
	if n.url == "" && n.dataDir == "" {
		return usagef("%s: needed for the embedded NATS server when --nats-url is empty", f.name("data-dir"))
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
func (a *apiFlags) register(f *flagSet) {
	f.inGroup(groupAPI, func() {
		a.registerEndpoint(f)
		a.registerUserBudget(f)
	})
}

// registerEndpoint registers where the API is and how fast a process may
// call it, for a command with a budget of its own (doctor).
func (a *apiFlags) registerEndpoint(f *flagSet) {
	f.inGroup(groupAPI, func() {
		f.str(&a.baseURL, "api-base-url", "CLOUDFLARE_API_BASE_URL", cfapi.DefaultBaseURL, "Cloudflare API base URL")
		f.str(&a.rateLimit, "rate-limit", "RECONCILER_RATE_LIMIT", ratelimit.DefaultRateLimitString, "request budget of the API token, REQUESTS/DURATION, shared by every process using the token")
		f.integer(&a.maxWrites, "max-writes", "RECONCILER_MAX_WRITES", ratelimit.DefaultMaxWrites, "API writes in flight at once")
	})
}

func (a *apiFlags) validate(f *flagSet) error {
	if err := a.validateEndpoint(f); err != nil {
		return err
	}
	return a.validateUserBudget(f)
}

// validateEndpoint checks the flags of registerEndpoint.
func (a *apiFlags) validateEndpoint(f *flagSet) error {
	var err error
	if a.rateAuto = strings.TrimSpace(a.rateLimit) == rateLimitAuto; a.rateAuto {
		a.budget, a.window = autoStartBudget, ratelimit.DefaultWindow
	} else if a.budget, a.window, err = ratelimit.ParseRate(a.rateLimit); err != nil {
		return usagef("%s: %v (or %q to follow the API's Ratelimit-Policy)", f.name("rate-limit"), err, rateLimitAuto)
	}
	if a.maxWrites < 1 || a.maxWrites > 256 {
		return usagef("%s: must be between 1 and 256, got %d", f.name("max-writes"), a.maxWrites)
	}
	return nil
}

// logFlags shape the log.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(f *flagSet) {
	f.inGroup(groupLog, func() {
		f.str(&l.format, "log-format", "RECONCILER_LOG_FORMAT", "auto", "log format: console, json, or auto (console on a terminal, json otherwise)")
		f.str(&l.level, "log-level", "RECONCILER_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	})
}

func (l *logFlags) validate(f *flagSet) error {
	switch l.format {
	case "auto", "json", "console":
	default:
		return usagef("%s: must be console, json or auto, got %q", f.name("log-format"), l.format)
	}
	if _, err := zapcore.ParseLevel(l.level); err != nil {
		return usagef("%s: %v", f.name("log-level"), err)
	}
	return nil
}

// logger builds the process logger: console lines on a terminal, JSON
// otherwise, unless --log-format says which.
func (l *logFlags) logger(stderr io.Writer) *zap.Logger {
	level, _ := zapcore.ParseLevel(l.level)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if l.format == "console" || l.format == "auto" && progress.IsTerminal(stderr) {
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		if !progress.IsTerminal(stderr) {
			encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(stderr), level))
}

// validateAll runs the validations in order and returns the first error.
func validateAll(f *flagSet, vs ...interface{ validate(*flagSet) error }) error {
	for _, v := range vs {
		if err := v.validate(f); err != nil {
			return err
		}
	}
	return nil
}

// credentialSet is the API credentials from the environment.
type credentialSet struct{ token, email, key string }

// budgetKey identifies the budget these credentials draw from: the token,
// or the legacy key pair; without credentials (an emulator without auth),
// the API base URL. The shared budget keeps only a hash of it.
func (c credentialSet) budgetKey(baseURL string) string {
	switch {
	case c.token != "":
		return c.token
	case c.email != "":
		return c.email + "\x00" + c.key
	}
	return "base-url:" + baseURL
}

// credentials reads the API credentials from the environment. A token is
// required against the real API; an emulator (any other base URL) may run
// without one.
func credentials(e env, baseURL string) (credentialSet, error) {
	c := credentialSet{token: e("CLOUDFLARE_API_TOKEN"), email: e("CLOUDFLARE_API_EMAIL"), key: e("CLOUDFLARE_API_KEY")}
	if c.token == "" && (c.email != "") != (c.key != "") {
		return c, usagef("CLOUDFLARE_API_EMAIL and CLOUDFLARE_API_KEY must be set together")
	}
	if c.token == "" && c.email == "" && strings.TrimRight(baseURL, "/") == cfapi.DefaultBaseURL {
		return c, usagef("CLOUDFLARE_API_TOKEN is not set (or CLOUDFLARE_API_EMAIL with CLOUDFLARE_API_KEY); it is required for %s", cfapi.DefaultBaseURL)
	}
	return c, nil
}

// osEnv reads the real environment.
func osEnv(k string) string { return os.Getenv(k) }
