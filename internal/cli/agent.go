package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/internal/sdnotify"
	"github.com/haroll/haroll/internal/tlsconf"
)

func newAgent() *cobra.Command {
	var plaintext bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent daemon: serve this host's slots over gRPC (mutual TLS) and a unix socket",
		Long: `agent serves the host's slots to a coordinator over gRPC with mutual TLS on
"listen" (tls.cert, tls.key, tls.client_ca), and to the haroll CLI on this host
over the unix socket "socket" (mode 0660). One replacement runs at a time. On
SIGTERM it rolls back the slot in progress, starts no other, and exits.
With metrics.listen set, it serves Prometheus metrics on GET /metrics there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadAgentConfig(cmd)
			if err != nil {
				return err
			}
			creds, err := listenCredentials(cfg, plaintext)
			if err != nil {
				return err
			}
			m := newAgentMetrics(cfg)
			a, closeAgent, err := openAgent(cmd.Context(), cfg, m)
			if err != nil {
				return err
			}
			defer closeAgent()
			// Served from before the recovery to after the last slot
			// in progress has finished or rolled back.
			stopMetrics, err := m.serve(a, cfg.Metrics.Listen)
			if err != nil {
				return err
			}
			defer stopMetrics()
			return serveAgent(cmd.Context(), cfg, a, creds)
		},
	}
	agentFlags(cmd)
	cmd.Flags().String("listen", "", "TCP address for gRPC with mutual TLS (overrides listen)")
	cmd.Flags().BoolVar(&plaintext, "insecure", false, "serve plaintext gRPC on listen; refused unless listen is a loopback address")
	return cmd
}

// listenCredentials builds the TCP listener's credentials: mutual TLS, or
// plaintext only when asked for explicitly and only on loopback.
func listenCredentials(cfg agent.Config, plaintext bool) (credentials.TransportCredentials, error) {
	if cfg.Listen == "" {
		if plaintext {
			return nil, usageError("--insecure without listen: there is no TCP listener to make plaintext")
		}
		return nil, nil
	}
	if plaintext {
		if !tlsconf.IsLoopback(cfg.Listen) {
			return nil, fmt.Errorf("--insecure: refusing plaintext gRPC on %s, which is not a loopback address: configure tls.cert, tls.key and tls.client_ca", cfg.Listen)
		}
		return insecure.NewCredentials(), nil
	}
	var missing []string
	for key, v := range map[string]string{"tls.cert": cfg.TLS.Cert, "tls.key": cfg.TLS.Key, "tls.client_ca": cfg.TLS.ClientCA} {
		if v == "" {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("listen %s needs mutual TLS: set %v (make them with `haroll certs`), or pass --insecure on a loopback address", cfg.Listen, missing)
	}
	tc, err := tlsconf.Server(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA, cfg.TLS.AllowedClients)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

// serveAgent serves until ctx ends, then lets the replacement in progress
// roll back and stops. Under systemd it sends READY=1 once every listener
// serves and STOPPING=1 when it begins to stop, and, when the unit has
// WatchdogSec=, pings the watchdog from start to exit while liveness passes.
func serveAgent(ctx context.Context, cfg agent.Config, a *agent.Agent, creds credentials.TransportCredentials) error {
	// The watchdog outlives ctx: it must go on through the rollback that
	// follows SIGTERM, until this function returns.
	live := &liveness{stateDir: cfg.StateDir}
	wctx, stopWatchdog := context.WithCancel(context.WithoutCancel(ctx))
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		if err := sdnotify.Watchdog(wctx, live.check, slog.Default()); err != nil {
			slog.Error("not pinging the systemd watchdog", "error", err)
		}
	}()
	defer func() { stopWatchdog(); <-watchdogDone }()

	// A replacement cut off when the agent (or the machine) died is finished
	// or rolled back before anything else; a failure is logged and retried
	// by the next replacement, and the agent serves anyway so that
	// `haroll status` can show the slot.
	if did, err := a.Recover(ctx); agent.OnlyLeftovers(err) {
		slog.Warn("recovery: "+err.Error(), "result", did)
	} else if err != nil {
		slog.Error("recovering an interrupted replacement failed: the next redeploy or `haroll recover` tries again; `haroll status` shows the slot pending (wedged when it cannot be undone), `haroll recover --status` says what is there and the ways forward", "error", err)
	} else if did != "" {
		slog.Warn("recovered an interrupted replacement", "result", did)
	}
	svc := agent.NewService(ctx, a, version)
	hs := health.NewServer()
	newServer := func(opts ...grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		agentpb.RegisterAgentServer(s, svc)
		healthpb.RegisterHealthServer(s, hs)
		return s
	}
	var servers []*grpc.Server
	var probes []func(context.Context) error
	errc := make(chan error, 2)
	if cfg.Socket != "" {
		l, err := listenUnix(ctx, cfg.Socket)
		if err != nil {
			return err
		}
		defer os.Remove(cfg.Socket)
		s := newServer()
		servers = append(servers, s)
		probes = append(probes, probeUnix(cfg.Socket))
		go func() { errc <- s.Serve(l) }()
	}
	if cfg.Listen != "" {
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
		s := newServer(grpc.Creds(creds))
		servers = append(servers, s)
		probes = append(probes, probeTCP(l.Addr()))
		go func() { errc <- s.Serve(l) }()
	}
	if len(servers) == 0 {
		return errors.New("nothing to serve: set listen and/or socket")
	}
	live.serving(probes...)
	slog.Info("agent serving", "listen", cfg.Listen, "socket", cfg.Socket, "slots", len(cfg.Slots))
	if err := sdnotify.Ready(); err != nil {
		slog.Warn("sd_notify READY=1 failed", "error", err)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	slog.Info("agent stopping: finishing or rolling back the slot in progress")
	live.stopping()
	if err := sdnotify.Stopping(); err != nil {
		slog.Warn("sd_notify STOPPING=1 failed", "error", err)
	}
	hs.Shutdown()
	svc.Wait()
	for _, s := range servers {
		stopped := make(chan struct{})
		go func() { s.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.Stop()
		}
	}
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return serveErr
	}
	return nil
}

// listenUnix listens on a unix socket with mode 0660. A socket file left by
// a dead agent is replaced; one a live agent answers on is an error.
func listenUnix(ctx context.Context, path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if _, err := os.Stat(path); err == nil {
		if r, ok := dialLocalAgent(ctx, path); ok {
			r.close()
			return nil, fmt.Errorf("socket %s: another agent is running on this host", path)
		}
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}
