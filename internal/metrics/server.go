package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrapeTimeout bounds one scrape's handler; the collectors bound their own
// reads well within it (DefaultStatusTimeout).
const scrapeTimeout = 10 * time.Second

// Server serves GET /metrics over plain HTTP.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Listen serves g's metrics on addr (host:port; port 0 picks a free one) at
// /metrics, until Shutdown. It returns once the address accepts connections,
// or the listen error.
func Listen(addr string, g prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelError)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      errLog,
		ErrorHandling: promhttp.ContinueOnError, // one broken collector must not hide the others
		Timeout:       scrapeTimeout,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "haroll metrics: GET /metrics")
	})
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: scrapeTimeout + 5*time.Second,
			IdleTimeout: time.Minute, ErrorLog: errLog},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting scrapes and waits, until ctx ends, for those in
// progress; then it closes them. It returns the error that ended serving,
// if any other than the shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}
