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

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs"
)

// usageError is bad usage or configuration: exit code 2, with a message
// that names the flag or variable.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// failedError is a run that finished with failures: exit code 1.
type failedError struct{ msg string }

func (e *failedError) Error() string { return e.msg }

// env is the process environment, replaceable in tests.
type env func(string) string

// common holds the flags every subcommand shares (CLI.md).
type common struct {
	natsURL        string
	dataDir        string
	apiBaseURL     string
	rateLimit      string
	concurrency    int
	metricsAddr    string
	subjectPrefix  string
	logFormat      string
	logLevel       string
	embeddedListen string
	maxWrites      int

	budget int
	window time.Duration
}

// flagSet builds a FlagSet whose defaults come from the environment, so a
// flag wins over its variable and the variable over the default.
type flagSet struct {
	*flag.FlagSet
	env    env
	errs   []error
	envFor map[string]string // flag name -> variable
	pos    []string          // positional arguments, wherever they stood
}

func newFlagSet(name string, e env, out io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &flagSet{FlagSet: fs, env: e, envFor: map[string]string{}}
}

func (f *flagSet) str(p *string, name, envVar, def, usage string) {
	if envVar != "" {
		if v := f.env(envVar); v != "" {
			def = v
		}
		usage += " (env " + envVar + ")"
		f.envFor[name] = envVar
	}
	f.StringVar(p, name, def, usage)
}

func (f *flagSet) integer(p *int, name, envVar string, def int, usage string) {
	if envVar != "" {
		if v := f.env(envVar); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				f.errs = append(f.errs, usagef("%s=%q: want an integer", envVar, v))
			} else {
				def = n
			}
		}
		usage += " (env " + envVar + ")"
		f.envFor[name] = envVar
	}
	f.IntVar(p, name, def, usage)
}

func (f *flagSet) duration(p *time.Duration, name, envVar string, def time.Duration, usage string) {
	if envVar != "" {
		if v := f.env(envVar); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				f.errs = append(f.errs, usagef("%s=%q: want a duration such as 30s or 5m", envVar, v))
			} else {
				def = d
			}
		}
		usage += " (env " + envVar + ")"
		f.envFor[name] = envVar
	}
	f.DurationVar(p, name, def, usage)
}

// parse parses args, allowing flags after positional arguments
// ("plan events.jsonl --output json"), and reports the first bad
// environment value.
func (f *flagSet) parse(args []string) error {
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usagef("%v", err)
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			f.pos = append(f.pos, rest...) // everything after -- is positional
			break
		}
		f.pos = append(f.pos, rest[0])
		args = rest[1:]
	}
	if len(f.errs) > 0 {
		return f.errs[0]
	}
	return nil
}

// name returns "--flag (or VAR)" for error messages.
func (f *flagSet) name(flagName string) string {
	if v, ok := f.envFor[flagName]; ok {
		return "--" + flagName + " (or " + v + ")"
	}
	return "--" + flagName
}

func (c *common) register(f *flagSet) {
	f.str(&c.natsURL, "nats-url", "NATS_URL", "", "NATS server URL; empty = embedded JetStream server in --data-dir")
	f.str(&c.dataDir, "data-dir", "RECONCILER_DATA_DIR", "./reconciler-data", "store of the embedded NATS server")
	f.str(&c.apiBaseURL, "api-base-url", "CLOUDFLARE_API_BASE_URL", cfapi.DefaultBaseURL, "Cloudflare API base URL")
	f.str(&c.rateLimit, "rate-limit", "RECONCILER_RATE_LIMIT", cfapi.DefaultRateLimitString, "shared API request budget, REQUESTS/DURATION (divide it between replicas)")
	f.integer(&c.concurrency, "concurrency", "RECONCILER_CONCURRENCY", 16, "scripts reconciled in parallel")
	f.integer(&c.maxWrites, "max-writes", "RECONCILER_MAX_WRITES", cfapi.DefaultMaxWrites, "API writes in flight at once")
	f.str(&c.metricsAddr, "metrics-addr", "RECONCILER_METRICS_ADDR", ":9464", "address of /metrics, /healthz and /readyz (empty = off)")
	f.str(&c.subjectPrefix, "subject-prefix", "RECONCILER_SUBJECT_PREFIX", "bindings", "event subject prefix")
	f.str(&c.logFormat, "log-format", "RECONCILER_LOG_FORMAT", "json", "log format: json or console")
	f.str(&c.logLevel, "log-level", "RECONCILER_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	f.str(&c.embeddedListen, "embedded-listen", "RECONCILER_EMBEDDED_LISTEN", jobs.DefaultEmbeddedListen, "where the embedded NATS server listens (host:port)")
}

// validate checks the shared flags and derives the budget.
func (c *common) validate(f *flagSet) error {
	var err error
	if c.budget, c.window, err = cfapi.ParseRate(c.rateLimit); err != nil {
		return usagef("%s: %v", f.name("rate-limit"), err)
	}
	if c.concurrency < 1 || c.concurrency > 1024 {
		return usagef("%s: must be between 1 and 1024, got %d", f.name("concurrency"), c.concurrency)
	}
	if c.maxWrites < 1 || c.maxWrites > 256 {
		return usagef("%s: must be between 1 and 256, got %d", f.name("max-writes"), c.maxWrites)
	}
	if c.logFormat != "json" && c.logFormat != "console" {
		return usagef("%s: must be json or console, got %q", f.name("log-format"), c.logFormat)
	}
	if _, err := zapcore.ParseLevel(c.logLevel); err != nil {
		return usagef("%s: %v", f.name("log-level"), err)
	}
	if c.subjectPrefix == "" || strings.ContainsAny(c.subjectPrefix, ".*> \t") {
		return usagef("%s: must be one subject token (no dots, wildcards or spaces), got %q", f.name("subject-prefix"), c.subjectPrefix)
	}
	if c.natsURL == "" && c.dataDir == "" {
		return usagef("%s: needed for the embedded NATS server when --nats-url is empty", f.name("data-dir"))
	}
	return nil
}

// logger builds the process logger.
func (c *common) logger(stderr io.Writer) *zap.Logger {
	level, _ := zapcore.ParseLevel(c.logLevel)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.logFormat == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(stderr), level))
}

// credentials reads the API credentials from the environment. A token is
// required against the real API; an emulator (any other base URL) may run
// without one.
func credentials(e env, baseURL string) (token, email, key string, err error) {
	token = e("CLOUDFLARE_API_TOKEN")
	email, key = e("CLOUDFLARE_API_EMAIL"), e("CLOUDFLARE_API_KEY")
	if token == "" && (email != "") != (key != "") {
		return "", "", "", usagef("CLOUDFLARE_API_EMAIL and CLOUDFLARE_API_KEY must be set together")
	}
	if token == "" && email == "" && strings.TrimRight(baseURL, "/") == cfapi.DefaultBaseURL {
		return "", "", "", usagef("CLOUDFLARE_API_TOKEN is not set (or CLOUDFLARE_API_EMAIL with CLOUDFLARE_API_KEY); it is required for %s", cfapi.DefaultBaseURL)
	}
	return token, email, key, nil
}

// osEnv reads the real environment.
func osEnv(k string) string { return os.Getenv(k) }
