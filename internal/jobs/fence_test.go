package jobs

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// freezer is a TCP proxy to a NATS server whose traffic can be frozen: the
// connection stays open but nothing gets through, as with a network
// partition or a stalled process.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	cond   *sync.Cond
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.cond = sync.NewCond(&f.mu)
	t.Cleanup(func() { ln.Close(); f.thaw() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *freezer) url() string { return "nats://" + f.ln.Addr().String() }

func (f *freezer) freeze() { f.mu.Lock(); f.frozen = true; f.mu.Unlock() }

func (f *freezer) thaw() {
	f.mu.Lock()
	f.frozen = false
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *freezer) serve(c net.Conn) {
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		c.Close()
		return
	}
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			f.mu.Lock()
			for f.frozen {
				f.cond.Wait()
			}
			f.mu.Unlock()
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					return
				}
				return
			}
		}
	}
	go pipe(up, c)
	go pipe(c, up)
}

// TestLeaseFencesWrites: a replica whose NATS connection freezes
// in the middle of a slow write loses its lease; its write is cancelled
// before the lease can expire on the server, so when another replica takes
// the script over, the emulator never sees two writes to it at once.
func TestLeaseFencesWrites(t *testing.T) {
	h := newHarness(t, harnessOpts{
		emu: cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: 5 * time.Second}},
		cfg: Config{SetupConfig: state.SetupConfig{LeaseTTL: time.Second, AckWait: 2 * time.Second}, CoalesceDelay: time.Millisecond},
	})
	h.seedScript("customers", "tenant-1")
	proxy := newFreezer(t, h.srv.ClientURL()[len("nats://"):])
	r1 := h.startRunnerVia("frozen", proxy.url())
	h.publish(newEvent("fence", "customers", "tenant-1", 1, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
	h.eventually("r1's write in flight", 20*time.Second, func() (bool, string) {
		return h.emu.InFlightWrites() == 1, fmt.Sprint(h.emu.InFlightWrites())
	})
	proxy.freeze()
	h.startRunner("healthy")
	h.eventually("the healthy replica applied the event", 30*time.Second, func() (bool, string) {
		return h.stored("customers", "tenant-1")["A"] != "", fmt.Sprint(h.emu.Stats().Writes)
	})
	if n := h.emu.Stats().OverlappingWrites; n != 0 {
		for _, r := range h.emu.RequestLog() {
			t.Logf("%s %s %s %d", r.Time.Format("15:04:05.000"), r.Method, r.Path, r.Status)
		}
		t.Fatalf("overlapping writes = %d: the frozen replica kept writing without its lease", n)
	}
	proxy.thaw()
	r1.stop(t)
}
