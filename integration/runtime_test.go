package integration

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/runtime"
)

// TestRuntimeClientAgainstARealHAProxy checks the runtime package against
// HAProxy 2.6 itself, not only against recorded replies.
func TestRuntimeClientAgainstARealHAProxy(t *testing.T) {
	ctx := context.Background()
	hp, c, appAddr := haproxyWithOneServer(t)
	waitUp := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s, err := c.Server(ctx, "app", "s1")
			if err == nil && s.FullyUp() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("s1 not fully up: %+v, %v", s, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUp()

	if err := c.SetWeight(ctx, "app", "s1", 0); err != nil {
		t.Fatal(err)
	}
	if cur, initial, err := c.Weight(ctx, "app", "s1"); err != nil || cur != 0 || initial != 7 {
		t.Fatalf("weight %d (initial %d), %v", cur, initial, err)
	}
	if err := c.SetWeight(ctx, "app", "s1", 7); err != nil {
		t.Fatal(err)
	}
	for _, st := range []runtime.State{runtime.StateDrain, runtime.StateMaint, runtime.StateReady} {
		if err := c.SetState(ctx, "app", "s1", st); err != nil {
			t.Fatalf("state %s: %v", st, err)
		}
	}
	waitUp()
	if err := c.ForceHealthDown(ctx, "app", "s1"); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Server(ctx, "app", "s1"); s.FullyUp() || s.CheckStatus != "L7OK" {
		t.Fatalf("right after health down: %+v (want DOWN with the stale L7OK)", s)
	}
	waitUp() // fresh checks bring it back
	if err := c.SetAddr(ctx, "app", "s1", "127.0.0.2", 1); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(appAddr)
	if err := c.SetAddr(ctx, "app", "s1", host, atoi(t, port)); err != nil {
		t.Fatal(err)
	}
	if err := c.ShutdownSessions(ctx, "app", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Server(ctx, "app", "nope"); !errors.Is(err, runtime.ErrNoSuchServer) {
		t.Fatalf("unknown server: %v", err)
	}
	if err := c.SetWeight(ctx, "app", "nope", 1); !errors.Is(err, runtime.ErrNoSuchServer) {
		t.Fatalf("set weight on an unknown server: %v", err)
	}
	if _, err := c.Backend(ctx, "nope"); !errors.Is(err, runtime.ErrNoSuchBackend) {
		t.Fatalf("unknown backend: %v", err)
	}
	if _, err := c.Admin(ctx, "nope", "s1"); !errors.Is(err, runtime.ErrNoSuchBackend) {
		t.Fatalf("admin of an unknown backend: %v", err)
	}
	before, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := hp.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := c.Info(ctx)
	if err != nil || !before.Reloaded(after) {
		t.Fatalf("reload not detected: %+v -> %+v, %v", before, after, err)
	}
}

// TestATimedOutCallIsNeverRunByAStoppedHAProxy stops HAProxy's worker
// (SIGSTOP: the kernel still accepts connections to its socket and buffers
// what is written) while a change and a pile of `show stat` reads time out,
// then lets it go on. HAProxy 2.6 executes what it then reads, also from a
// connection the client has closed: the weight must still be the one it had,
// since the caller of the change was told it failed.
func TestATimedOutCallIsNeverRunByAStoppedHAProxy(t *testing.T) {
	ctx := context.Background()
	_, c, _ := haproxyWithOneServer(t)
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(info.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	resume := func() {
		if stopped {
			stopped = false
			_ = syscall.Kill(info.Pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	timesOut := func(what string, do func(context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if err := do(ctx); !errors.Is(err, runtime.ErrTimeout) {
			t.Fatalf("%s against a stopped HAProxy: got %v, want ErrTimeout", what, err)
		}
	}
	timesOut("set weight 0", func(ctx context.Context) error { return c.SetWeight(ctx, "app", "s1", 0) })
	for range 10 {
		timesOut("show stat", func(ctx context.Context) error { _, err := c.Server(ctx, "app", "s1"); return err })
	}
	resume()
	time.Sleep(500 * time.Millisecond) // HAProxy reads what was left in its socket at once
	cur, _, err := c.Weight(ctx, "app", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if cur != 7 {
		t.Fatalf("the weight is %d after HAProxy went on: the `set weight 0` whose caller timed out ran afterwards", cur)
	}
}

// haproxyWithOneServer starts HAProxy with one server, s1 at weight 7, in
// front of an HTTP server that answers every request, and a runtime client
// of its stats socket with a 1 s timeout; appAddr is the HTTP server's.
func haproxyWithOneServer(t *testing.T) (hp *harness.HAProxy, c *runtime.Client, appAddr string) {
	t.Helper()
	requireDeps(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	fe, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	hp, err = harness.StartHAProxy(context.Background(), harness.HAProxyConfig{Dir: t.TempDir(), Frontend: fe,
		Servers: []harness.Server{{Name: "s1", Addr: l.Addr().String(), Weight: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hp.Stop() })
	c, err = runtime.New(hp.Socket, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return hp, c, l.Addr().String()
}
