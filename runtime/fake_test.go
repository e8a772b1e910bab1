package runtime

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSocket is a stand-in for HAProxy's stats socket: it answers each
// command with the reply its handler gives, one connection per command, as
// HAProxy does in non-interactive mode.
type fakeSocket struct {
	mu       sync.Mutex
	handler  func(cmd string) string
	commands []string
	hang     chan struct{} // when non-nil, connections are held open without reply until closed
	// freeze, when non-nil, stands for a frozen HAProxy: the kernel accepts
	// connections and buffers what is written, nothing reads until it is
	// closed. Then each connection is read as HAProxy 2.6 reads it, also one
	// the client has closed meanwhile: a command in it is executed.
	freeze chan struct{}
	// late counts commands read after their connection was closed by the
	// client (a caller that had given up on them).
	late int
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
	f.mu.Lock()
	freeze := f.freeze
	f.mu.Unlock()
	if freeze != nil {
		<-freeze
	}
	r := bufio.NewReader(conn)
	interactive := false
	for {
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return
		}
		// HAProxy executes a command line it has read whether or not the
		// client is still there; a peek tells the fake whether it is.
		_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, peekErr := r.Peek(1)
		_ = conn.SetReadDeadline(time.Time{})
		closed := errors.Is(peekErr, io.EOF)
		cmd := strings.TrimSpace(line)
		switch cmd {
		case "prompt": // interactive mode: every command's output ends with a prompt
			interactive = !interactive
			if interactive {
				_, _ = conn.Write([]byte("\n> "))
			}
			continue
		case "quit":
			return
		}
		cmd = strings.TrimPrefix(cmd, "set severity-output number;")
		f.mu.Lock()
		f.commands = append(f.commands, cmd)
		if closed {
			f.late++
		}
		hang, handler := f.hang, f.handler
		f.mu.Unlock()
		if hang != nil {
			<-hang
			return
		}
		term := "\n"
		if interactive {
			term = "\n> "
		}
		if _, err := conn.Write([]byte(term + handler(cmd) + "\n" + term)); err != nil || !interactive {
			return
		}
	}
}

// lateCommands returns how many commands were read from a connection the
// client had already closed.
func (f *fakeSocket) lateCommands() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.late
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
