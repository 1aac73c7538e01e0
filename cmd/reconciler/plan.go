package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs"
	"github.com/reconciler/reconciler/internal/planner"
)

func cmdPlan(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, e env) error {
	var c common
	var output string
	var stored bool
	f := newFlagSet("plan", e, stderr)
	c.register(f)
	f.str(&output, "output", "", "text", "output: text (like terraform plan) or json (one JSON object per script)")
	f.BoolVar(&stored, "stored", false, "start from the desired and last-applied state stored in NATS (--nats-url, or a running `reconciler run`), so ownership and secret fingerprints count; default: a reconciler that has applied nothing")
	f.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reconciler plan [flags] [FILE|-]\n\nReads events (JSON lines) and live state from the API and prints what would change for each script. It writes nothing.")
		f.PrintDefaults()
	}
	if err := f.parse(args); err != nil {
		return err
	}
	name, err := oneArg(f, "input", true)
	if err != nil {
		return err
	}
	if err := c.validate(f); err != nil {
		return err
	}
	if output != "text" && output != "json" {
		return usagef("--output: must be text or json, got %q", output)
	}
	token, email, key, err := credentials(e, c.apiBaseURL)
	if err != nil {
		return err
	}
	in, err := openInput(name, stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	events, err := jobs.ReadEvents(in, c.subjectPrefix, validationPlanner())
	if err != nil {
		return usagef("%s: %v", name, err)
	}
	limiter, err := cfapi.NewLimiter(c.budget, c.window, c.maxWrites)
	if err != nil {
		return usagef("--rate-limit: %v", err)
	}
	client, err := cfapi.New(cfapi.Config{BaseURL: c.apiBaseURL, Token: token, Email: email, APIKey: key, Limiter: limiter, UserAgent: "reconciler/" + version})
	if err != nil {
		return usagef("%s: %v", f.name("api-base-url"), err)
	}
	base := jobs.BaseState(jobs.FreshState)
	var fpKey []byte
	if stored {
		log := c.logger(stderr)
		conn, err := connectNATS(&c, false, log)
		if err != nil {
			return err
		}
		defer conn.close(log, 5*time.Second)
		if base, err = jobs.StoredState(ctx, conn.js, jobs.Names{SubjectPrefix: c.subjectPrefix}); err != nil {
			return err
		}
		if fpKey, err = fingerprintKey(ctx, conn.js, e, 1); err != nil {
			return err
		}
	} else {
		fpKey = make([]byte, 32)
		_, _ = rand.Read(fpKey)
	}
	pl, err := planner.New(planner.Options{FingerprintKey: fpKey})
	if err != nil {
		return err
	}
	failed := 0
	for _, pv := range jobs.PreviewEvents(ctx, client, pl, events, base) {
		if output == "json" {
			obj := map[string]any{"script": pv.Ref, "events": pv.EventIDs}
			if pv.Err != nil {
				obj["error"] = pv.Err.Error()
			} else {
				obj["plan"] = pv.Plan
			}
			line, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, string(line))
		} else {
			fmt.Fprintf(stdout, "# %s (events: %d)\n", pv.Ref, len(pv.EventIDs))
			if pv.Err != nil {
				fmt.Fprintf(stdout, "error: %v\n\n", pv.Err)
			} else {
				if err := pv.Plan.Render(stdout); err != nil {
					return err
				}
				fmt.Fprintln(stdout)
			}
		}
		if pv.Err != nil {
			failed++
		}
	}
	if failed > 0 {
		return &failedError{msg: fmt.Sprintf("%d scripts could not be planned", failed)}
	}
	return nil
}
