package cfapitest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// NewTestServer starts the emulator on a loopback httptest server that
// tb.Cleanup closes, and returns it with the base URL clients use, such as
// "http://127.0.0.1:40123/client/v4".
func NewTestServer(tb testing.TB, opts Options) (*Server, string) {
	tb.Helper()
	s := New(opts)
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	return s, ts.URL + s.db.prefix
}

// Serve serves the emulator on ln until ctx is done, then shuts down
// gracefully (waiting up to 5 seconds for requests in flight). It returns
// nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// ListenAndServe listens on addr (such as "127.0.0.1:8787" or ":0"), calls
// ready with the base URL once it accepts connections (the CLI prints it),
// and serves until ctx is done, as Serve does.
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(baseURL string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(listenURL(ln.Addr(), s.db.prefix))
	}
	return s.Serve(ctx, ln)
}
