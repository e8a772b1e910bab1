package cli

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/internal/certs"
	"github.com/haroll/haroll/internal/tlsconf"
	"github.com/haroll/haroll/rollout"
)

// resumptions answers Status and records, call by call, whether the TLS
// session of the connection it came on was resumed.
type resumptions struct {
	agentpb.UnimplementedAgentServer
	mu      sync.Mutex
	resumed []bool
}

func (r *resumptions) Status(ctx context.Context, _ *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	p, _ := peer.FromContext(ctx)
	info, _ := p.AuthInfo.(credentials.TLSInfo)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resumed = append(r.resumed, info.State.DidResume)
	return &agentpb.StatusResponse{}, nil
}

func TestTheCoordinatorsSecondConnectionToAnAgentResumesItsTLSSession(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := certs.NewCA(caDir, "test", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	for name, u := range map[string]certs.Usage{"agent": certs.Server, "coordinator": certs.Client} {
		if err := certs.Issue(caDir, dir, name, nil, loopback, u, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	ca := filepath.Join(caDir, certs.CACertFile)
	stc, err := tlsconf.Server(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"), ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &resumptions{}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(stc)))
	agentpb.RegisterAgentServer(g, srv)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)

	var cfg rollout.Config
	cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA = filepath.Join(dir, "coordinator.crt"), filepath.Join(dir, "coordinator.key"), ca
	host := l.Addr().String()
	dial, err := dialer(cfg, []string{host})
	if err != nil {
		t.Fatal(err)
	}
	// Dialled twice, as the coordinator does for the preflight and again for
	// the host's batch; each connection is closed before the next.
	for range 2 {
		a, err := dial(t.Context(), host)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Status(t.Context()); err != nil {
			t.Fatal(err)
		}
		a.(*rollout.Client).Close()
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.resumed) != 2 || srv.resumed[0] || !srv.resumed[1] {
		t.Fatalf("resumed, connection by connection: %v, want [false true]", srv.resumed)
	}
}
