package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/haroll/haroll/agent/agentpb"
)

// statusOnly answers Status, as any live agent does.
type statusOnly struct {
	agentpb.UnimplementedAgentServer
}

func (statusOnly) Status(context.Context, *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	return &agentpb.StatusResponse{}, nil
}

func TestASocketALiveAgentAnswersOnIsNotTakenOver(t *testing.T) {
	path := filepath.Join(shortDir(t), "agent.sock")
	l, err := listenUnix(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	agentpb.RegisterAgentServer(g, statusOnly{})
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket: %v, mode %v, want %o", err, fi.Mode().Perm(), SocketMode)
	}
	if _, err := listenUnix(t.Context(), path); err == nil || !strings.Contains(err.Error(), "another agent is running on this host") {
		t.Fatalf("a second agent: got %v", err)
	}
}

func TestASocketFileADeadAgentLeftIsReplaced(t *testing.T) {
	path := filepath.Join(shortDir(t), "agent.sock")
	// A socket file nobody listens on any more, as a killed agent leaves it.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, ok := DialLocal(t.Context(), path); ok {
		t.Fatal("DialLocal found an agent behind a dead socket")
	}
	l, err = listenUnix(t.Context(), path)
	if err != nil {
		t.Fatalf("a dead agent's socket: %v", err)
	}
	l.Close()
}
