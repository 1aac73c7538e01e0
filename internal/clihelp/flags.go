package clihelp

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// UsageError is bad usage or configuration (exit code 2), with a message
// that names the flag or variable.
type UsageError struct{ Msg string }

// Error returns the message.
func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// Env is the process environment, replaceable in tests.
type Env func(string) string

// Flags is the flags of one command, with defaults from the environment:
// a flag wins over its variable and the variable over the default. Its
// Str, Int and Duration register a flag with its variable (they shadow
// pflag's methods of those names, which the commands do not use).
type Flags struct {
	*pflag.FlagSet
	// Env is where the variables are read.
	Env Env
	// Pos is the positional arguments, wherever they stood.
	Pos []string
	// Command names the command in messages ("dlq list").
	Command string
	errs    []error
	envFor  map[string]string // flag name -> variable
}

// NewFlags returns a flag set of its own (not a command's), parsed with
// ParseArgs.
func NewFlags(name string, e Env, out io.Writer) *Flags {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(out)
	return WrapFlags(fs, name, e)
}

// CommandFlags returns the flag set of cmd, whose defaults read e; cobra
// parses it.
func CommandFlags(cmd *cobra.Command, e Env) *Flags {
	return WrapFlags(cmd.Flags(), cmd.Name(), e)
}

// WrapFlags returns fs, named name in messages, with defaults read from e.
// Its flags are listed in the order registered.
func WrapFlags(fs *pflag.FlagSet, name string, e Env) *Flags {
	fs.SortFlags = false // in the order registered: the groups, then the command's own
	return &Flags{FlagSet: fs, Env: e, envFor: map[string]string{}, Command: name}
}

// Str registers a string flag whose default envVar ("" = none) may set.
func (f *Flags) Str(p *string, name, envVar, def, usage string) {
	def, usage = envDefault(f, name, envVar, def, usage, func(v string) (string, error) { return v, nil }, "")
	f.StringVar(p, name, def, usage)
}

// Int registers an integer flag whose default envVar ("" = none) may set.
func (f *Flags) Int(p *int, name, envVar string, def int, usage string) {
	def, usage = envDefault(f, name, envVar, def, usage, strconv.Atoi, "an integer")
	f.IntVar(p, name, def, usage)
}

// Duration registers a duration flag whose default envVar ("" = none) may
// set.
func (f *Flags) Duration(p *time.Duration, name, envVar string, def time.Duration, usage string) {
	def, usage = envDefault(f, name, envVar, def, usage, time.ParseDuration, "a duration such as 30s or 5m")
	f.DurationVar(p, name, def, usage)
}

// Alias registers old as a deprecated second spelling of the flag
// current, bound to the same variable; using it prints a notice naming
// current. It stays in the help, marked deprecated.
func (f *Flags) Alias(old, current string) {
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
// unset; a value parse refuses is kept for EnvErr to report (wanting
// want) and def stays.
func envDefault[T any](f *Flags, name, envVar string, def T, usage string, parse func(string) (T, error), want string) (T, string) {
	if envVar == "" {
		return def, usage
	}
	f.envFor[name] = envVar
	if v := f.Env(envVar); v != "" {
		if x, err := parse(v); err != nil {
			f.errs = append(f.errs, Usagef("%s=%q: want %s", envVar, v, want))
		} else {
			def = x
		}
	}
	return def, usage + " (env " + envVar + ")"
}

// EnvErr returns the first environment variable whose value its flag
// refused.
func (f *Flags) EnvErr() error {
	if len(f.errs) > 0 {
		return f.errs[0]
	}
	return nil
}

// NoArgs refuses the positional arguments of a command that takes none;
// hint ("" = none) says what to give instead.
func (f *Flags) NoArgs(hint string) error {
	if len(f.Pos) == 0 {
		return nil
	}
	if hint != "" {
		return Usagef("%s takes no arguments, got %q (%s)", f.Command, f.Pos, hint)
	}
	return Usagef("%s takes no arguments, got %q", f.Command, f.Pos)
}

// ParseArgs parses args (flags anywhere, everything after -- positional)
// and reports the first bad environment value; commands are parsed by
// cobra instead.
func (f *Flags) ParseArgs(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return Usagef("%v", err)
	}
	f.Pos = f.Args()
	return f.EnvErr()
}

// IsSet reports whether the flag was given on the command line or through
// its variable.
func (f *Flags) IsSet(flagName string) bool {
	if f.Changed(flagName) {
		return true
	}
	v, ok := f.envFor[flagName]
	return ok && f.Env(v) != ""
}

// Label returns "--flag (or VAR)" for error messages.
func (f *Flags) Label(flagName string) string {
	if v, ok := f.envFor[flagName]; ok {
		return "--" + flagName + " (or " + v + ")"
	}
	return "--" + flagName
}

// InGroup runs register and files every flag it added under group in the
// help.
func (f *Flags) InGroup(group string, register func()) { InGroup(f.FlagSet, group, register) }

// ValidateAll runs the validations in order and returns the first error.
func ValidateAll(f *Flags, vs ...func(*Flags) error) error {
	for _, v := range vs {
		if err := v(f); err != nil {
			return err
		}
	}
	return nil
}

// AddGoFlags adds the flags of gfs (Go's flag package). Those whose usage
// starts "same as --" are second spellings, kept out of the help; the
// defaults of those secret says hold a secret are never shown.
func (f *Flags) AddGoFlags(gfs *flag.FlagSet, secret func(name string) bool) {
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
		if secret(gf.Name) {
			fl.DefValue = ""
		}
	})
}
