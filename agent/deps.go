package agent

import (
	"context"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// HAProxy is the part of the runtime API the agent uses (runtime.Client).
type HAProxy interface {
	Server(ctx context.Context, backend, server string) (runtime.ServerStat, error)
	Backend(ctx context.Context, backend string) ([]runtime.ServerStat, error)
	Admin(ctx context.Context, backend, server string) (runtime.Admin, error)
	SetWeight(ctx context.Context, backend, server string, weight int) error
	SetState(ctx context.Context, backend, server string, state runtime.State) error
	SetAddr(ctx context.Context, backend, server, ip string, port int) error
	ForceHealthDown(ctx context.Context, backend, server string) error
	// LeaveMaint takes the server out of maintenance into state to (ready
	// or drain) and forces its health down in the same command line.
	LeaveMaint(ctx context.Context, backend, server string, to runtime.State) error
	ShutdownSessions(ctx context.Context, backend, server string) error
	Info(ctx context.Context) (runtime.Info, error)
	// ServersState is `show servers state` of every backend, as a
	// server-state-file holds it.
	ServersState(ctx context.Context) (string, error)
	// SocketOwner is the pid, in the agent's pid namespace, of the process
	// serving the stats socket (0: not visible from here;
	// runtime.ErrNoOwner: the socket cannot tell).
	SocketOwner(ctx context.Context) (int, error)
}

// Docker is the part of the Docker Engine API the agent uses (docker.Client).
type Docker interface {
	Inspect(ctx context.Context, nameOrID string) (docker.Container, error)
	// EnsureImage pulls ref when it is not on the host, calling progress
	// with every change of the pull's progress, and stops when ctx ends.
	EnsureImage(ctx context.Context, ref string, progress func(docker.PullProgress)) (imageID string, err error)
	Clone(ctx context.Context, from, image, name string, moves ...docker.HostPortMove) (id string, err error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string) error
	Rename(ctx context.Context, id, name string) error
	Remove(ctx context.Context, id string) error
	// WaitHealthy also runs the HEALTHCHECK itself every startInterval
	// (0: never); the first run that passes ends the wait.
	WaitHealthy(ctx context.Context, id string, startInterval time.Duration) error
}
