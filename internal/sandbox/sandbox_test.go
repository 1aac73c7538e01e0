package sandbox

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
)

// TestEmulatorOnATakenPort: the emulator starts on a free port when its
// address is taken, serves the seeded tenants, and Close stops it.
func TestEmulatorOnATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if got := FreeIfTaken(taken.Addr().String()); got == taken.Addr().String() {
		t.Errorf("FreeIfTaken returned the taken %s", got)
	}
	emu, err := StartEmulator(context.Background(), taken.Addr().String(), 3, 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(emu.URL, taken.Addr().String()) {
		t.Errorf("emulator at %s, on the taken address", emu.URL)
	}
	bs, ok := emu.Bindings(cfapitest.DefaultAccount, Namespace, cfapitest.TenantName(3))
	if !ok || len(bs) == 0 {
		t.Errorf("tenant 3 not seeded: %v %v", bs, ok)
	}
	resp, err := http.Get(emu.URL + "/accounts/" + cfapitest.DefaultAccount + "/workers/dispatch/namespaces/" + Namespace + "/scripts/" + cfapitest.TenantName(1) + "/settings")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("settings of tenant 1: %s", resp.Status)
	}
	emu.Close()
	if _, err := http.Get(emu.URL); err == nil {
		t.Error("the emulator still answers after Close")
	}
}
