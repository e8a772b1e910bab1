package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"

	"github.com/haroll/haroll/agent"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// notifySocket stands in for systemd's: a unixgram socket that NOTIFY_SOCKET
// points at, with WATCHDOG_USEC=watchdog for this process.
func notifySocket(t *testing.T, watchdog time.Duration) *net.UnixConn {
	t.Helper()
	path := filepath.Join(shortDir(t), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	return conn
}

// shortDir is a directory whose unix socket paths stay under the 108-byte
// limit, which t.TempDir under a long test name can pass.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "haroll")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// next returns the next datagram, or "" when none comes within d.
func next(t *testing.T, conn *net.UnixConn, d time.Duration) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// await reads datagrams until want arrives, skipping those in skip; any other
// one, or nothing within 5 s, fails the test.
func await(t *testing.T, conn *net.UnixConn, want string, skip ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got := next(t, conn, time.Until(deadline))
		switch {
		case got == want:
			return
		case got == "":
		case !contains(skip, got):
			t.Fatalf("got %q while waiting for %q", got, want)
		}
	}
	t.Fatalf("no %q within 5s", want)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// quietFor fails the test when a watchdog ping arrives within d, after
// letting one that was already on its way arrive.
func quietFor(t *testing.T, conn *net.UnixConn, d time.Duration) {
	t.Helper()
	next(t, conn, 100*time.Millisecond)
	if got := next(t, conn, d); got != "" {
		t.Fatalf("got %q, want no ping for %s while unhealthy", got, d)
	}
}

func TestTheAgentTellsSystemdItIsReadyAndPingsTheWatchdogOnlyWhileHealthy(t *testing.T) {
	const watchdog = 600 * time.Millisecond // a ping every 300ms
	conn := notifySocket(t, watchdog)
	dir := shortDir(t)
	cfg := agent.DefaultConfig()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "agent.sock")
	cfg.Listen = "127.0.0.1:0"
	cfg.Slots = []agent.SlotConfig{{Name: "web-1", Backend: "web", Server: "web1", Container: "web-1"}}
	if err := os.Mkdir(cfg.StateDir, 0o750); err != nil {
		t.Fatal(err)
	}
	// Serving and the watchdog touch neither HAProxy nor Docker: there are none.
	a := agent.New(cfg, nil, nil, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	var serveErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveErr = Serve(ctx, cfg, a, Options{Creds: insecure.NewCredentials(), Version: "test", Log: quietLog()})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})

	await(t, conn, "READY=1", "WATCHDOG=1")
	await(t, conn, "WATCHDOG=1")
	await(t, conn, "WATCHDOG=1")

	// No state_dir: no journal can be written, so no ping; pings come back
	// with it.
	if err := os.Rename(cfg.StateDir, cfg.StateDir+".gone"); err != nil {
		t.Fatal(err)
	}
	quietFor(t, conn, 3*watchdog/2)
	if err := os.Rename(cfg.StateDir+".gone", cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	await(t, conn, "WATCHDOG=1")

	// The CLI's socket gone: no ping.
	if err := os.Remove(cfg.Socket); err != nil {
		t.Fatal(err)
	}
	quietFor(t, conn, 3*watchdog/2)

	cancel()
	await(t, conn, "STOPPING=1", "WATCHDOG=1")
	select {
	case <-done:
		if serveErr != nil {
			t.Fatalf("Serve: %v", serveErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
