package runtime

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeSocket is a stand-in for HAProxy's stats socket: it answers each
// command with the reply its handler gives, one connection per command, as
// HAProxy does in non-interactive mode.
type fakeSocket struct {
	mu       sync.Mutex
	handler  func(cmd string) string
	commands []string
	hang     chan struct{} // when non-nil, connections are held open without reply until closed
}

func (f *fakeSocket) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

func (f *fakeSocket) serve(t *testing.T, l net.Listener) {
	t.Helper()
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go f.answer(conn)
		}
	}()
}

func (f *fakeSocket) answer(conn net.Conn) {
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	cmd := strings.TrimPrefix(strings.TrimSpace(line), "set severity-output number;")
	f.mu.Lock()
	f.commands = append(f.commands, cmd)
	hang, handler := f.hang, f.handler
	f.mu.Unlock()
	if hang != nil {
		<-hang
		return
	}
	_, _ = conn.Write([]byte("\n" + handler(cmd) + "\n\n"))
}

// newFakeUnix starts a fake socket under t.TempDir and a Client for it.
func newFakeUnix(t *testing.T, handler func(cmd string) string) (*fakeSocket, *Client) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSocket{handler: handler}
	f.serve(t, l)
	c, err := New(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

// newFakeTCP starts a fake socket on a loopback port and a Client for it.
func newFakeTCP(t *testing.T, handler func(cmd string) string) (*fakeSocket, *Client) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSocket{handler: handler}
	f.serve(t, l)
	c, err := New(l.Addr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

// recorded returns a reply recorded from HAProxy 2.6 under testdata/.
func recorded(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
