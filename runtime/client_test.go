package runtime

import (
	"context"
	"errors"
	"path/filepath"
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
