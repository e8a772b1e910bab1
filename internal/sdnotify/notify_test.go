package sdnotify_test

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/sdnotify"
)

// listen opens a unixgram socket standing in for systemd's and points NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// socketPath is a short path: t.TempDir() under a long test name can pass the 108-byte limit of a
// unix socket address.
func socketPath(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(t.TempDir(), "notify.sock"); len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "notify.sock")
}

func TestReadyAndStoppingReachTheNotifySocket(t *testing.T) {
	conn := listen(t, socketPath(t))
	if err := sdnotify.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, conn); got != "READY=1" {
		t.Errorf("got %q, want READY=1", got)
	}
	if err := sdnotify.Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, conn); got != "STOPPING=1" {
		t.Errorf("got %q, want STOPPING=1", got)
	}
}

func TestAnAbstractSocketIsReachedByItsAtName(t *testing.T) {
	b := make([]byte, 8)
	rand.Read(b)
	conn := listen(t, "@haroll-sdnotify-test-"+hex.EncodeToString(b))
	if err := sdnotify.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, conn); got != "READY=1" {
		t.Errorf("got %q, want READY=1", got)
	}
}

func TestWithoutNotifySocketNothingHappensAndNoErrorComesBack(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	for _, f := range []func() error{sdnotify.Ready, sdnotify.Stopping} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestASocketThatIsGoneIsAnErrorNamingIt(t *testing.T) {
	path := socketPath(t)
	t.Setenv("NOTIFY_SOCKET", path)
	err := sdnotify.Ready()
	if err == nil {
		t.Fatal("no error")
	}
	if got := err.Error(); !strings.Contains(got, path) {
		t.Errorf("error %q does not name %s", got, path)
	}
}
