// Command testapp is the small HTTP service that haroll's integration tests and demo roll over.
//
// It is configured by environment variables, each also settable by a flag of the same name in lower
// case (-version, -port, -boot_delay, -warmup, -latency_max, -shutdown_delay, -broken):
//
//	VERSION      reported by every response as header X-Version and body "version=<v>\n" (default "dev")
//	PORT         listening port (default 8080)
//	BOOT_DELAY   sleep before listening (Go duration, default 0)
//	WARMUP       after listening, /health answers 503 for this long (default 0)
//	LATENCY_MAX  each request to / sleeps a uniformly random time in [0, LATENCY_MAX) (default 0)
//	BROKEN=1     /health always answers 503; the app still listens and serves /
//	ERROR_RATE   share of requests to / answered 500 (0..1, default 0); /health is not affected
//	SHUTDOWN_DELAY  after SIGTERM, go on serving (and answering /health 200) this long before the
//	             graceful shutdown (Go duration, default 0): an app with a long shutdown grace
//
// Routes: / (any method, 200 after the random latency), /slow?ms=N (200 after N ms, or when the client
// goes away), /health (200 "ok" once ready, else 503), and GET /_served (below). Responses to / and
// /slow also carry header X-Server: <hostname> (os.Hostname(); in Docker, the container id prefix), so
// that a client behind HAProxy knows which container answered.
//
// GET /_served answers JSON {"requests": N, "first_unix_nano": T1, "last_unix_nano": T2}: N counts the
// client requests the app received, that is, requests to / (and any other path / serves) and /slow,
// counted when they arrive, before any latency and whether or not they complete; T1 and T2 are the
// arrival times of the first and last of them, in nanoseconds since the Unix epoch (0 when N is 0).
// Requests to /health and /_served are not counted. A test can ask a container directly whether it
// got any client request before some instant. /_served answers 405 to methods other than GET and HEAD.
//
// SIGTERM or SIGINT shut the server down gracefully, after SHUTDOWN_DELAY: in-flight requests complete
// (up to 30 s), then the process exits 0. "testapp -check" (or "testapp check") probes http://127.0.0.1:$PORT/health and exits
// 0 on 200, 1 otherwise; images built FROM scratch use it as their HEALTHCHECK since they have no shell.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// shutdownTimeout bounds how long in-flight requests may take to finish after SIGTERM.
const shutdownTimeout = 30 * time.Second

type config struct {
	version    string
	port       int
	bootDelay  time.Duration
	warmup     time.Duration
	latencyMax time.Duration
	// shutdownDelay: how long the app goes on serving after SIGTERM.
	shutdownDelay time.Duration
	broken        bool
	errorRate     float64
	check         bool
	hostname      string // X-Server of responses to / and /slow; "" = os.Hostname()
}

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(2)
	}
	if cfg.check {
		os.Exit(check(cfg.port))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serve(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func parseConfig(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("testapp", flag.ContinueOnError)
	fs.StringVar(&cfg.version, "version", envString("VERSION", "dev"), "version reported in X-Version and the body")
	fs.IntVar(&cfg.port, "port", 8080, "listening port")
	fs.DurationVar(&cfg.bootDelay, "boot_delay", 0, "sleep before listening")
	fs.DurationVar(&cfg.warmup, "warmup", 0, "time /health answers 503 after listening")
	fs.DurationVar(&cfg.latencyMax, "latency_max", 0, "upper bound of the random latency of /")
	fs.DurationVar(&cfg.shutdownDelay, "shutdown_delay", 0, "time the app goes on serving after SIGTERM")
	fs.BoolVar(&cfg.broken, "broken", os.Getenv("BROKEN") == "1", "never become ready")
	fs.Float64Var(&cfg.errorRate, "error_rate", 0, "share of requests to / answered 500")
	fs.BoolVar(&cfg.check, "check", false, "probe /health on 127.0.0.1:$PORT and exit 0 when it answers 200")

	// Environment first, flags override.
	var errs []error
	if v := os.Getenv("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		errs = append(errs, wrapEnv("PORT", err))
		cfg.port = p
	}
	for name, d := range map[string]*time.Duration{"BOOT_DELAY": &cfg.bootDelay, "WARMUP": &cfg.warmup, "LATENCY_MAX": &cfg.latencyMax, "SHUTDOWN_DELAY": &cfg.shutdownDelay} {
		if v := os.Getenv(name); v != "" {
			parsed, err := time.ParseDuration(v)
			errs = append(errs, wrapEnv(name, err))
			*d = parsed
		}
	}
	if v := os.Getenv("ERROR_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err == nil && (r < 0 || r > 1) {
			err = errors.New("want 0..1")
		}
		errs = append(errs, wrapEnv("ERROR_RATE", err))
		cfg.errorRate = r
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	if len(args) > 0 && args[0] == "check" {
		cfg.check = true
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	return cfg, nil
}

func wrapEnv(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("environment variable %s: %w", name, err)
}

func envString(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// check is the HEALTHCHECK probe; it returns the process exit code.
func check(port int) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "check:", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "check: /health answered", resp.Status)
		return 1
	}
	return 0
}

// serve runs the app until ctx ends (SIGTERM), then for cfg.shutdownDelay, and shuts it down.
func serve(ctx context.Context, cfg config) error {
	select {
	case <-time.After(cfg.bootDelay):
	case <-ctx.Done():
		return nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.port))
	if err != nil {
		return err
	}
	var ready atomic.Bool
	if !cfg.broken {
		time.AfterFunc(cfg.warmup, func() { ready.Store(true) })
	}
	srv := &http.Server{Handler: handler(cfg, &ready), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Still listening and ready: Docker's health checks and HAProxy's pass
	// during the delay, as they do for an app in a long shutdown grace.
	if cfg.shutdownDelay > 0 {
		fmt.Fprintf(os.Stderr, "testapp: signalled: serving %s more before shutting down\n", cfg.shutdownDelay)
	}
	select {
	case err := <-errc:
		return err
	case <-time.After(cfg.shutdownDelay):
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// hostname is os.Hostname(), or "unknown" when it cannot be read.
func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "unknown"
}

// served counts the client requests (/ and /slow) as they arrive.
type served struct {
	mu          sync.Mutex
	requests    int64
	first, last int64 // arrival times, Unix nanoseconds
}

func (s *served) add() {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.first == 0 {
		s.first = now
	}
	s.last = max(s.last, now)
}

// servedReport is the body of GET /_served.
type servedReport struct {
	Requests      int64 `json:"requests"`
	FirstUnixNano int64 `json:"first_unix_nano"`
	LastUnixNano  int64 `json:"last_unix_nano"`
}

func (s *served) report() servedReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return servedReport{Requests: s.requests, FirstUnixNano: s.first, LastUnixNano: s.last}
}

func handler(cfg config, ready *atomic.Bool) http.Handler {
	reply := func(w http.ResponseWriter, status int, body string) {
		w.Header().Set("X-Version", cfg.version)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	if cfg.hostname == "" {
		cfg.hostname = hostname()
	}
	var count served
	// client wraps the handlers of client requests: counted on arrival, answered with X-Server.
	client := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			count.add()
			w.Header().Set("X-Server", cfg.hostname)
			h(w, r)
		}
	}
	mux := http.NewServeMux()
	// A plain path, not "GET /_served": with a method in the pattern, a POST
	// would fall through to / and be counted.
	mux.HandleFunc("/_served", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("X-Version", cfg.version)
		w.Header().Set("X-Server", cfg.hostname)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(count.report())
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			reply(w, http.StatusServiceUnavailable, "not ready\n")
			return
		}
		reply(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("/slow", client(func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		if !sleep(r.Context(), time.Duration(ms)*time.Millisecond) {
			return
		}
		reply(w, http.StatusOK, "version="+cfg.version+"\n")
	}))
	mux.HandleFunc("/", client(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		var d time.Duration
		if cfg.latencyMax > 0 {
			d = rand.N(cfg.latencyMax)
		}
		if !sleep(r.Context(), d) {
			return
		}
		if cfg.errorRate > 0 && rand.Float64() < cfg.errorRate {
			reply(w, http.StatusInternalServerError, "version="+cfg.version+" failed on purpose\n")
			return
		}
		reply(w, http.StatusOK, "version="+cfg.version+"\n")
	}))
	return mux
}

// sleep waits for d and reports false when the client went away first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
