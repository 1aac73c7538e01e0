package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseLost cancels a reconcile whose lease could not be renewed in
// time: another replica may hold the script now.
var ErrLeaseLost = errors.New("lease on the script lost")

// lease is a held per-script write lease (a key in the TTL'd lease
// bucket). It fences writes: Context is cancelled as soon as the lease can
// no longer be proven held, and check is called just before every write
// and before the last-applied record is saved.
//
// Why it fences: the lease key expires in the server TTL after it was last
// stored. A renewal that starts at local time t and succeeds was stored
// after t, so the key lives at least until t+TTL. The holder considers
// itself the owner only until t+TTL-margin (validUntil), renews every
// TTL/3 with a timeout of TTL/4, and a watchdog cancels Context at
// validUntil if no renewal succeeded meanwhile. So while Context is alive
// no other replica can have created the key. An HTTP write already on the
// wire when the watchdog fires is cancelled; that is the one window a
// fence without server-side support cannot close, and it is bounded by the
// margin.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	owner  string
	ttl    time.Duration
	margin time.Duration

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	rev        uint64
	validUntil time.Time
	watchdog   *time.Timer

	stop chan struct{}
	done chan struct{}
}

// AcquireLease takes the lease on key for owner. It returns ok=false when
// another owner holds it. The lease is renewed in the background until
// release.
func AcquireLease(ctx context.Context, kv jetstream.KeyValue, key, owner string, ttl time.Duration) (*Lease, bool, error) {
	l := &Lease{kv: kv, key: key, owner: owner, ttl: ttl, margin: ttl / 10,
		stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, ttl/4)
	rev, err := kv.Create(cctx, key, []byte(owner))
	cancel()
	if err != nil {
		if IsWrongLastSequence(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("acquiring lease on %s: %w", key, err)
	}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	l.rev = rev
	l.validUntil = start.Add(ttl - l.margin)
	l.watchdog = time.AfterFunc(time.Until(l.validUntil), func() {
		l.cancel(fmt.Errorf("%w: not renewed within %s", ErrLeaseLost, ttl-l.margin))
	})
	go l.renewLoop()
	return l, true, nil
}

// Context is cancelled when the lease is lost or released.
func (l *Lease) Context() context.Context { return l.ctx }

// check returns an error unless the lease is provably held now.
func (l *Lease) Check() error {
	if err := context.Cause(l.ctx); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !time.Now().Before(l.validUntil) {
		return ErrLeaseLost
	}
	return nil
}

func (l *Lease) renewLoop() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.ctx.Done():
			return
		case <-t.C:
			if err := l.renew(); err != nil {
				l.cancel(fmt.Errorf("%w: %v", ErrLeaseLost, err))
				return
			}
		}
	}
}

func (l *Lease) renew() error {
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), l.ttl/4)
	defer cancel()
	newRev, err := l.kv.Update(ctx, l.key, []byte(l.owner), rev)
	if err != nil {
		return fmt.Errorf("renewing lease on %s: %w", l.key, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rev = newRev
	l.validUntil = start.Add(l.ttl - l.margin)
	l.watchdog.Reset(time.Until(l.validUntil))
	return nil
}

// release stops renewing and deletes the lease if it is still ours.
func (l *Lease) Release() {
	close(l.stop)
	<-l.done
	l.watchdog.Stop()
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	held := l.Check() == nil
	l.cancel(context.Canceled)
	if held {
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/4)
		defer cancel()
		_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
	}
}
