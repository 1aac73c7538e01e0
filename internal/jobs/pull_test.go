package jobs

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/metrics"
)

// TestRecreatedConsumerWhileGaugesRead: the pull loop recreates the live
// consumer (after an operator deleted it) while the gauges read it every
// second; under -race the two must not touch the consumer unguarded.
// Fifty rounds each: with five, the NATS connection's own locks ordered
// the two often enough that a plain pointer field passed; with fifty it
// is reported as a data race every time (checked by swapping the atomic
// pointer for a plain one).
func TestRecreatedConsumerWhileGaugesRead(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	res := h.setup()
	r := NewRunner(h.cfg, res, h.client(cfapi.Hooks{}), h.planner, metrics.New(prometheus.NewRegistry()), zap.NewNop())
	t.Cleanup(r.queue.ShutDown)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			it, err := r.recreateConsumer(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			it.Stop()
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			r.gauges(ctx)
		}
	}()
	wg.Wait()
	if c := *r.consumer.Load(); c == nil || c.CachedInfo().Config.Durable != r.cfg.Consumer {
		t.Fatal("the runner lost its live consumer")
	}
}
