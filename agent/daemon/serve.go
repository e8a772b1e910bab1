package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/internal/sdnotify"
)

// GracefulStopTimeout bounds each server's GracefulStop once the replacement
// in progress has ended: the calls still open then are reads (Status, a
// Counters stream up to its window, a coordinator's Redeploy stream after
// its report), which must not hold the agent's exit up, so they are cut.
const GracefulStopTimeout = 5 * time.Second

// Options are what Serve needs besides the agent and its configuration.
type Options struct {
	// Creds secure the TCP listener (cfg.Listen): mutual TLS, or plaintext
	// on loopback. Unused without cfg.Listen.
	Creds credentials.TransportCredentials
	// Version is the agent's version, as Status reports it.
	Version string
	// Log is where Serve logs; nil is slog.Default().
	Log *slog.Logger
}

// Serve serves a on cfg.Socket (the CLI's unix socket) and cfg.Listen (the
// coordinators' TCP listener, with opts.Creds and the keepalive of
// agentpb.ServerKeepalive) until ctx ends or a server fails, then lets the
// replacement in progress finish or roll back and stops. Before it serves, it
// finishes or rolls back a replacement an earlier agent left (a failure is
// logged; the agent serves anyway so that `haroll status` can show the slot).
//
// Under systemd it sends READY=1 once every listener serves and STOPPING=1
// when it begins to stop, and, when the unit has WatchdogSec=, pings the
// watchdog from start to return while liveness passes.
//
// It returns nil after a stop that ctx asked for; an error when neither
// listener is configured, a listener cannot be opened (another agent on the
// socket, a port in use) or a server fails.
func Serve(ctx context.Context, cfg agent.Config, a *agent.Agent, opts Options) error {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	// The watchdog outlives ctx: it must go on through the rollback that
	// follows SIGTERM, until this function returns.
	live := &liveness{stateDir: cfg.StateDir}
	wctx, stopWatchdog := context.WithCancel(context.WithoutCancel(ctx))
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		if err := sdnotify.Watchdog(wctx, live.check, log); err != nil {
			log.Error("not pinging the systemd watchdog", "error", err)
		}
	}()
	defer func() { stopWatchdog(); <-watchdogDone }()

	// A replacement cut off when the agent (or the machine) died is finished
	// or rolled back before anything else; a failure is logged and retried
	// by the next replacement, and the agent serves anyway so that
	// `haroll status` can show the slot.
	if did, err := a.Recover(ctx); agent.OnlyLeftovers(err) {
		log.Warn("recovery: "+err.Error(), "result", did)
	} else if err != nil {
		log.Error("recovering an interrupted replacement failed: the next redeploy or `haroll recover` tries again; `haroll status` shows the slot pending (wedged when it cannot be undone), `haroll recover --status` says what is there and the ways forward", "error", err)
	} else if did != "" {
		log.Warn("recovered an interrupted replacement", "result", did)
	}
	svc := agent.NewService(ctx, a, opts.Version)
	hs := health.NewServer()
	newServer := func(extra ...grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(append(agentpb.ServerKeepalive(), extra...)...)
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
		s := newServer(grpc.Creds(opts.Creds))
		servers = append(servers, s)
		probes = append(probes, probeTCP(l.Addr()))
		go func() { errc <- s.Serve(l) }()
	}
	if len(servers) == 0 {
		return errors.New("nothing to serve: set listen and/or socket")
	}
	live.serving(probes...)
	log.Info("agent serving", "listen", cfg.Listen, "socket", cfg.Socket, "slots", len(cfg.Slots))
	if err := sdnotify.Ready(); err != nil {
		log.Warn("sd_notify READY=1 failed", "error", err)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("agent stopping: finishing or rolling back the slot in progress")
	live.stopping()
	if err := sdnotify.Stopping(); err != nil {
		log.Warn("sd_notify STOPPING=1 failed", "error", err)
	}
	hs.Shutdown()
	svc.Wait()
	for _, s := range servers {
		stopGracefully(s, GracefulStopTimeout)
	}
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return serveErr
	}
	return nil
}

// stopGracefully lets s finish its open calls for up to d, then cuts them.
func stopGracefully(s *grpc.Server, d time.Duration) {
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.Stop()
	}
}
