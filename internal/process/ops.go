package process

import (
	"context"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/internal/progress"
)

// Ops is what an operator command (status, drift) reads through: the
// pipeline's state on NATS, its planner (the stored fingerprint key), and
// an API client on the shared budget (nil without one).
type Ops struct {
	Res     *state.Resources
	Planner *planner.Planner
	Client  *cfapi.Client
	close   func()
}

// OpsConfig says what OpenOps opens.
type OpsConfig struct {
	// Tool names the command in the budget-wait notice on Stderr.
	Tool   string
	Stderr io.Writer
	Names  state.Names
	// Key returns the pipeline's fingerprint key, read only.
	Key func(ctx context.Context, conn *natsconn.Conn) ([]byte, error)
	// API (nil = no API client) and the credentials, read only then.
	API   *Budget
	Creds func() (cfapi.Credentials, error)
	Log   *zap.Logger
}

// OpenOps opens, on conn (which it closes with Close), the pipeline's
// state and planner and, with c.API, an API client on its shared budget;
// a wait for that budget of more than a few seconds is noticed on
// c.Stderr.
func OpenOps(ctx context.Context, conn *natsconn.Conn, c OpsConfig) (*Ops, error) {
	o := &Ops{close: func() { conn.Close(c.Log, 5*time.Second) }}
	fail := func(err error) (*Ops, error) { o.Close(); return nil, err }
	var err error
	if o.Res, err = state.Open(ctx, conn.JS, c.Names); err != nil {
		return fail(err)
	}
	key, err := c.Key(ctx, conn)
	if err != nil {
		return fail(err)
	}
	if o.Planner, err = planner.New(planner.Options{FingerprintKey: key}); err != nil {
		return fail(err)
	}
	if c.API == nil {
		return o, nil
	}
	creds, err := c.Creds()
	if err != nil {
		return fail(err)
	}
	lim, closeLim, err := c.API.Limiter(ctx, creds, conn.JS, Shared, 1, c.Log)
	if err != nil {
		return fail(err)
	}
	closeConn := o.close
	o.close = func() { closeLim(); closeConn() }
	if o.Client, err = c.API.Client(creds, lim, cfapi.Hooks{}, time.Minute); err != nil {
		return fail(err)
	}
	n := &progress.WaitNotice{Tool: c.Tool, Budget: progress.LimiterBudget(lim), Out: c.Stderr}
	stopWatch := n.Watch(ctx)
	o.close = func() { stopWatch(); closeLim(); closeConn() }
	return o, nil
}

// Close releases what OpenOps opened.
func (o *Ops) Close() { o.close() }
