package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// backends is a fake HAProxy and Docker whose every call returns err and is
// recorded by name.
type backends struct {
	mu    sync.Mutex
	err   error
	calls []string
}

func (b *backends) call(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, name)
	return b.err
}

func (b *backends) Server(context.Context, string, string) (runtime.ServerStat, error) {
	return runtime.ServerStat{Weight: 7}, b.call("Server")
}
func (b *backends) Backend(context.Context, string) ([]runtime.ServerStat, error) {
	return nil, b.call("Backend")
}
func (b *backends) Admin(context.Context, string, string) (runtime.Admin, error) {
	return runtime.Admin{}, b.call("Admin")
}
func (b *backends) SetWeight(context.Context, string, string, int) error { return b.call("SetWeight") }
func (b *backends) SetState(context.Context, string, string, runtime.State) error {
	return b.call("SetState")
}
func (b *backends) SetAddr(context.Context, string, string, string, int) error {
	return b.call("SetAddr")
}
func (b *backends) ForceHealthDown(context.Context, string, string) error {
	return b.call("ForceHealthDown")
}

func (b *backends) LeaveMaint(context.Context, string, string, runtime.State) error {
	return b.call("LeaveMaint")
}
func (b *backends) ShutdownSessions(context.Context, string, string) error {
	return b.call("ShutdownSessions")
}
func (b *backends) Info(context.Context) (runtime.Info, error) { return runtime.Info{}, b.call("Info") }
func (b *backends) SocketOwner(context.Context) (int, error)   { return 0, b.call("SocketOwner") }
func (b *backends) ServersState(context.Context) (string, error) {
	return "1\n", b.call("ServersState")
}
func (b *backends) Inspect(context.Context, string) (docker.Container, error) {
	return docker.Container{ID: "c1"}, b.call("Inspect")
}
func (b *backends) EnsureImage(context.Context, string, func(docker.PullProgress)) (string, error) {
	return "img", b.call("EnsureImage")
}
func (b *backends) Clone(context.Context, string, string, string, ...docker.HostPortMove) (string, error) {
	return "c2", b.call("Clone")
}
func (b *backends) Start(context.Context, string) error          { return b.call("Start") }
func (b *backends) Stop(context.Context, string) error           { return b.call("Stop") }
func (b *backends) Rename(context.Context, string, string) error { return b.call("Rename") }
func (b *backends) Remove(context.Context, string) error         { return b.call("Remove") }
func (b *backends) WaitHealthy(context.Context, string, time.Duration) error {
	return b.call("WaitHealthy")
}

// callAll makes every call of both interfaces once, through c.
func callAll(c *Calls, b *backends) {
	ctx := context.Background()
	h, d := c.HAProxy(b), c.Docker(b)
	_, _ = h.Server(ctx, "app", "s1")
	_, _ = h.Backend(ctx, "app")
	_, _ = h.Admin(ctx, "app", "s1")
	_ = h.SetWeight(ctx, "app", "s1", 0)
	_ = h.SetState(ctx, "app", "s1", runtime.StateDrain)
	_ = h.SetAddr(ctx, "app", "s1", "127.0.0.1", 8080)
	_ = h.ForceHealthDown(ctx, "app", "s1")
	_ = h.LeaveMaint(ctx, "app", "s1", runtime.StateReady)
	_ = h.ShutdownSessions(ctx, "app", "s1")
	_, _ = h.Info(ctx)
	_, _ = h.SocketOwner(ctx)
	_, _ = h.ServersState(ctx)
	_, _ = d.Inspect(ctx, "c1")
	_, _ = d.EnsureImage(ctx, "app:v2", nil)
	_, _ = d.Clone(ctx, "c1", "app:v2", "c1-next")
	_ = d.Start(ctx, "c2")
	_ = d.Stop(ctx, "c1")
	_ = d.Rename(ctx, "c1", "c1-prev")
	_ = d.Remove(ctx, "c1")
	_ = d.WaitHealthy(ctx, "c2", 0)
}

func TestEveryCallIsPassedOnAndCountedUnderItsOp(t *testing.T) {
	c := NewCalls(prometheus.NewRegistry())
	b := &backends{}
	callAll(c, b)
	if len(b.calls) != len(haproxyOps)+len(dockerOps) {
		t.Fatalf("passed on %v", b.calls)
	}
	for _, m := range []struct {
		sys *callMetrics
		ops []string
	}{{&c.haproxy, haproxyOps}, {&c.docker, dockerOps}} {
		for _, op := range m.ops {
			if got := testutil.ToFloat64(m.sys.calls.WithLabelValues(op)); got != 1 {
				t.Errorf("%s calls = %v, want 1", op, got)
			}
			if got := testutil.ToFloat64(m.sys.errors.WithLabelValues(op)); got != 0 {
				t.Errorf("%s errors = %v, want 0", op, got)
			}
		}
		// Every op's latency histogram got its one observation, no other op
		// appeared.
		if n := testutil.CollectAndCount(m.sys.latency); n != len(m.ops) {
			t.Errorf("%d latency series, want %d", n, len(m.ops))
		}
	}
}

func TestErrorsAreCountedAndReturnedButACancellationIsNotAnError(t *testing.T) {
	for _, tc := range []struct {
		err        error
		wantErrors float64
	}{
		{fmt.Errorf("show stat: %w", runtime.ErrEmptyReply), 1},
		{docker.ErrContainerNotFound, 1},
		{fmt.Errorf("stop: %w", context.Canceled), 0},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			c := NewCalls(prometheus.NewRegistry())
			b := &backends{err: tc.err}
			if _, err := c.HAProxy(b).Server(context.Background(), "app", "s1"); !errors.Is(err, tc.err) {
				t.Errorf("Server returned %v, want %v", err, tc.err)
			}
			if err := c.Docker(b).Stop(context.Background(), "c1"); !errors.Is(err, tc.err) {
				t.Errorf("Stop returned %v, want %v", err, tc.err)
			}
			if got := testutil.ToFloat64(c.haproxy.errors.WithLabelValues("server")); got != tc.wantErrors {
				t.Errorf("haproxy server errors = %v, want %v", got, tc.wantErrors)
			}
			if got := testutil.ToFloat64(c.docker.errors.WithLabelValues("stop")); got != tc.wantErrors {
				t.Errorf("docker stop errors = %v, want %v", got, tc.wantErrors)
			}
			if got := testutil.ToFloat64(c.docker.calls.WithLabelValues("stop")); got != 1 {
				t.Errorf("docker stop calls = %v, want 1", got)
			}
		})
	}
}

func TestResultsComeBackUnchanged(t *testing.T) {
	c := NewCalls(prometheus.NewRegistry())
	st, err := c.HAProxy(&backends{}).Server(context.Background(), "app", "s1")
	if err != nil || st.Weight != 7 {
		t.Fatalf("Server = %+v, %v", st, err)
	}
	id, err := c.Docker(&backends{}).Clone(context.Background(), "c1", "app:v2", "n")
	if err != nil || id != "c2" {
		t.Fatalf("Clone = %q, %v", id, err)
	}
}
