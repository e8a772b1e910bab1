package runtime

import (
	"context"
	"errors"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
)

func TestAnEmptyReplyIsAnErrorNotSuccess(t *testing.T) {
	_, c := newFakeUnix(t, func(string) string { return "" })
	if _, err := c.Info(context.Background()); !errors.Is(err, ErrEmptyReply) {
		t.Fatalf("got %v, want ErrEmptyReply", err)
	}
	if _, err := c.Backend(context.Background(), "app"); !errors.Is(err, ErrEmptyReply) {
		t.Fatalf("got %v, want ErrEmptyReply", err)
	}
}

func TestAHangingSocketTimesOut(t *testing.T) {
	for name, start := range map[string]func(*testing.T, func(string) string) (*fakeSocket, *Client){
		"unix": newFakeUnix, "tcp": newFakeTCP,
	} {
		t.Run(name, func(t *testing.T) {
			f, c := start(t, nil)
			hang := make(chan struct{})
			f.hang = hang
			t.Cleanup(func() { close(hang) })
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			begin := time.Now()
			_, err := c.Info(ctx)
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("got %v, want ErrTimeout", err)
			}
			if waited := time.Since(begin); waited > 5*time.Second {
				t.Fatalf("the call ignored its deadline: returned after %s", waited)
			}
		})
	}
}

func TestAMissingSocketIsUnreachable(t *testing.T) {
	c, err := New(filepath.Join(t.TempDir(), "nope.sock"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
	c, err = New("127.0.0.1:1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("tcp: got %v, want ErrUnreachable", err)
	}
}

func TestNewRejectsAddressesThatAreNeitherPathNorHostPort(t *testing.T) {
	for _, addr := range []string{"", "admin.sock", "relative/path.sock"} {
		if _, err := New(addr, 0); err == nil {
			t.Errorf("New(%q) accepted", addr)
		}
	}
	for _, addr := range []string{"/run/haproxy/admin.sock", "unix:///run/a.sock", "127.0.0.1:9999", "tcp://[::1]:9999"} {
		if _, err := New(addr, 0); err != nil {
			t.Errorf("New(%q): %v", addr, err)
		}
	}
}

func TestTCPSocketSpeaksTheSameProtocol(t *testing.T) {
	f, c := newFakeTCP(t, func(string) string { return recorded(t, "show_info.txt") })
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Pid == 0 || info.Version == "" {
		t.Fatalf("got %+v", info)
	}
	if got := f.seen(); len(got) != 1 || got[0] != "show info" {
		t.Fatalf("sent %q", got)
	}
}

func TestReloadIsDetectedByPidOrUptime(t *testing.T) {
	before := Info{Pid: 10, UptimeSec: 100}
	for _, tc := range []struct {
		after Info
		want  bool
	}{
		{Info{Pid: 10, UptimeSec: 101}, false},
		{Info{Pid: 11, UptimeSec: 0}, true},
		{Info{Pid: 10, UptimeSec: 3}, true},
	} {
		if got := before.Reloaded(tc.after); got != tc.want {
			t.Errorf("Reloaded(%+v) = %v, want %v", tc.after, got, tc.want)
		}
	}
}

// TestACallThatTimedOutNeverRunsLater freezes the socket as a stopped
// HAProxy is frozen: connections are accepted by the kernel and what is
// written to them waits, unread. A change and a pile of `show stat` reads
// time out; once the socket thaws, HAProxy 2.6 would execute every command
// it then finds written, also on connections the client has closed. None
// may reach it: the callers were told they failed. And nothing of the calls
// may still run in the client once they have returned.
func TestACallThatTimedOutNeverRunsLater(t *testing.T) {
	for name, start := range map[string]func(*testing.T, func(string) string) (*fakeSocket, *Client){
		"unix": newFakeUnix, "tcp": newFakeTCP,
	} {
		t.Run(name, func(t *testing.T) {
			f, c := start(t, func(cmd string) string {
				if strings.HasPrefix(cmd, "show stat") {
					return recorded(t, "show_stat_app.csv")
				}
				return ""
			})
			freeze := make(chan struct{})
			f.mu.Lock()
			f.freeze = freeze
			f.mu.Unlock()
			thawed := false
			thaw := func() {
				if !thawed {
					thawed = true
					close(freeze)
				}
			}
			t.Cleanup(thaw)
			call := func(do func(context.Context) error) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				if err := do(ctx); !errors.Is(err, ErrTimeout) {
					t.Fatalf("got %v, want ErrTimeout", err)
				}
			}
			call(func(ctx context.Context) error { return c.SetWeight(ctx, "app", "app1", 0) })
			const reads = 10
			for range reads {
				call(func(ctx context.Context) error { _, err := c.Server(ctx, "app", "app1"); return err })
			}
			// The close of a timed-out call's connection (context.AfterFunc)
			// may be finishing as the call returns: give it a moment, far
			// less than the 30 s a call used to linger.
			n := callsInFlight()
			for deadline := time.Now().Add(time.Second); n > 0 && time.Now().Before(deadline); n = callsInFlight() {
				time.Sleep(10 * time.Millisecond)
			}
			if n > 0 {
				t.Errorf("%d calls still run in the client 1s after %d timed out", n, reads+1)
			}
			thaw()
			time.Sleep(300 * time.Millisecond) // a command left behind would arrive by then
			if got := f.seen(); len(got) > 0 {
				t.Fatalf("after the socket thawed it received %d commands whose callers had timed out: %q", len(got), got)
			}
			if _, err := c.Server(context.Background(), "app", "app1"); err != nil {
				t.Fatalf("after the thaw: %v", err)
			}
			if got := f.seen(); len(got) != 1 || f.lateCommands() != 0 {
				t.Fatalf("after the thaw sent %q (%d from closed connections), want one show stat", got, f.lateCommands())
			}
		})
	}
}

// callsInFlight counts the goroutines running a runtime call's socket I/O.
func callsInFlight() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:goruntime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "haroll/runtime.") && strings.Contains(g, "Executor") {
			n++
		}
	}
	return n
}
