package process

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/clihelp"
)

// TestBudgetLocalAndClient: a private budget against the real API needs
// Local, against any other base URL it is allowed; the refusal names
// --local-budget and the rate; a bad rate and a bad base URL are usage
// errors naming their flags; the metrics server is off without an
// address.
func TestBudgetLocalAndClient(t *testing.T) {
	prod := Budget{BaseURL: cfapi.DefaultBaseURL + "/", RateLimit: "1100/5m", Budget: 1100, Window: 5 * time.Minute, MaxWrites: 4}
	var ue *clihelp.UsageError
	if err := prod.LocalAllowed(); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--local-budget to use 1100/5m alone") {
		t.Errorf("production without Local: %v", err)
	}
	prod.Local = true
	if err := prod.LocalAllowed(); err != nil {
		t.Errorf("production with Local: %v", err)
	}
	emu := Budget{BaseURL: "http://127.0.0.1:1/client/v4", Budget: 100, Window: time.Second, Auto: true, MaxWrites: 4}
	if err := emu.LocalAllowed(); err != nil {
		t.Errorf("emulator: %v", err)
	}
	if got := emu.RateText(); got != "100/1s (auto's conservative start)" {
		t.Errorf("RateText %q", got)
	}
	lim, closeLim, err := emu.Limiter(context.Background(), cfapi.Credentials{}, nil, Local, 1, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeLim()
	if _, err := emu.Client(cfapi.Credentials{Token: "tok-secret"}, lim, cfapi.Hooks{}, time.Second); err != nil {
		t.Errorf("client: %v", err)
	}
	bad := emu
	bad.Budget = 0
	if _, _, err := bad.Limiter(context.Background(), cfapi.Credentials{}, nil, Local, 1, zap.NewNop()); !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "--rate-limit:") {
		t.Errorf("zero budget: %v", err)
	}
	bad = emu
	bad.BaseURL = "::not a url"
	if _, err := bad.Client(cfapi.Credentials{Token: "tok-secret"}, lim, cfapi.Hooks{}, time.Second); !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "--api-base-url:") || strings.Contains(err.Error(), "tok-secret") {
		t.Errorf("bad base URL: %v", err)
	}
	srv, err := ServeMetrics("", nil, nil, nil, nil, zap.NewNop())
	if err != nil || srv.Addr() != "" {
		t.Errorf("metrics off: %v %q", err, srv.Addr())
	}
	srv.Shutdown()
}
