package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// liveness is what the agent's systemd watchdog asks before each ping: can
// this agent still do its job? It checks only what the agent itself owns: its
// state_dir (journal, host lock) is still there, and, while it serves, each
// listener still accepts: the unix socket answers the gRPC health service and
// the TCP port takes a connection.
//
// It deliberately does not ask HAProxy or Docker. An agent is most needed
// while one of them is down: it waits out the outage and rolls the slot in
// progress back (see "HAProxy or Docker not answering" in the README). A
// watchdog that followed HAProxy would have systemd kill the agent in the
// middle of that rollback, and restart it into the same outage.
//
// While the agent starts (recovering an interrupted replacement) and while it
// stops (letting the slot in progress finish or roll back) there are no
// listeners to probe and only state_dir is checked: both phases are bounded
// by the unit's start and stop timeouts, not by the watchdog.
type liveness struct {
	stateDir string

	mu     sync.Mutex
	probes []func(context.Context) error
}

// serving adds the listeners' probes to the check.
func (l *liveness) serving(probes ...func(context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.probes = probes
}

// stopping drops the listeners' probes: they are being shut down.
func (l *liveness) stopping() { l.serving() }

// check returns nil when the agent is healthy, else an error saying what is
// wrong; ctx bounds the probes.
func (l *liveness) check(ctx context.Context) error {
	if fi, err := os.Stat(l.stateDir); err != nil {
		return fmt.Errorf("state_dir: %w: the journal and host lock cannot be written", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("state_dir %s is not a directory: the journal and host lock cannot be written", l.stateDir)
	}
	l.mu.Lock()
	probes := l.probes
	l.mu.Unlock()
	for _, p := range probes {
		if err := p(ctx); err != nil {
			return err
		}
	}
	return nil
}

// probeUnix asks the gRPC health service on the agent's unix socket, which
// goes through the same accept loop and handlers as a CLI's request.
func probeUnix(path string) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("socket: %w: the haroll CLI cannot reach the agent", err)
		}
		conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("socket %s: %w", path, err)
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("socket %s: gRPC health check: %w", path, err)
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("socket %s: gRPC health check: %s", path, s)
		}
		return nil
	}
}

// probeTCP connects to the TCP listener (on loopback when it listens on every
// address) and hangs up. A gRPC call would need a client certificate; a
// connection closed before the TLS handshake is not logged by the server.
func probeTCP(addr net.Addr) func(context.Context) error {
	target := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		loopback := net.IPv6loopback
		if ta.IP.To4() != nil {
			loopback = net.IPv4(127, 0, 0, 1)
		}
		target = (&net.TCPAddr{IP: loopback, Port: ta.Port}).String()
	}
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return fmt.Errorf("listen %s: %w: the coordinator cannot reach the agent", addr, err)
		}
		return conn.Close()
	}
}
