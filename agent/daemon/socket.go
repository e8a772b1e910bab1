package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/haroll/haroll/agent/agentpb"
)

// LocalProbeTimeout bounds the Status call by which DialLocal decides that an
// agent runs behind a socket: a live agent answers it from memory in
// milliseconds, even in the middle of a replacement, so a second means the
// socket is a leftover (or its agent is wedged) and the caller goes on
// without it.
const LocalProbeTimeout = time.Second

// SocketMode is the unix socket's mode: whoever may use it may redeploy
// the host's slots, so only the agent's user and group.
const SocketMode = 0o660

// DialLocal returns a connection to the agent that serves the unix socket at
// path when it answers Status within LocalProbeTimeout, and false when none
// does (no path, no socket file, nobody listening, no answer in time); the
// caller closes the connection.
func DialLocal(ctx context.Context, path string) (*grpc.ClientConn, bool) {
	if path == "" {
		return nil, false
	}
	if _, err := os.Stat(path); err != nil {
		return nil, false
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, LocalProbeTimeout)
	defer cancel()
	if _, err := agentpb.NewAgentClient(conn).Status(ctx, &agentpb.StatusRequest{}); err != nil {
		conn.Close()
		return nil, false
	}
	return conn, true
}

// listenUnix listens on a unix socket with SocketMode. A socket file left by
// a dead agent is replaced; one a live agent answers on is an error.
func listenUnix(ctx context.Context, path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if _, err := os.Stat(path); err == nil {
		if conn, ok := DialLocal(ctx, path); ok {
			conn.Close()
			return nil, fmt.Errorf("socket %s: another agent is running on this host", path)
		}
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}
