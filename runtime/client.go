package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	native "github.com/haproxytech/client-native/v5/runtime"
	"github.com/haproxytech/client-native/v5/runtime/options"
)

// DefaultTimeout bounds one runtime API call when the caller's context has
// no earlier deadline.
const DefaultTimeout = 5 * time.Second

// Client talks to one HAProxy runtime API socket. It is safe for concurrent
// use; client-native serialises commands on a unix socket.
type Client struct {
	addr    string
	timeout time.Duration
	exec    executor

	mu   sync.Mutex
	sids map[string]int // "backend/server" -> numeric server id, for Server
}

// executor runs one command and returns HAProxy's raw reply.
type executor interface {
	execute(ctx context.Context, cmd string) (string, error)
}

// New returns a client for addr: a unix socket path ("/run/haproxy/admin.sock"
// or "unix:///run/haproxy/admin.sock") or a TCP address ("127.0.0.1:9999" or
// "tcp://127.0.0.1:9999"). It does no I/O: use Ping to check the socket.
// timeout bounds each call (0 means DefaultTimeout).
func New(addr string, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &Client{addr: addr, timeout: timeout}
	switch {
	case strings.HasPrefix(addr, "unix://"):
		c.exec = newUnixExecutor(strings.TrimPrefix(addr, "unix://"))
	case strings.HasPrefix(addr, "/"):
		c.exec = newUnixExecutor(addr)
	case strings.HasPrefix(addr, "tcp://"):
		c.exec = tcpExecutor{addr: strings.TrimPrefix(addr, "tcp://")}
	default:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("haproxy socket %q: want an absolute unix socket path or host:port", addr)
		}
		c.exec = tcpExecutor{addr: addr}
	}
	return c, nil
}

// Addr returns the socket address the client was made for.
func (c *Client) Addr() string { return c.addr }

// Raw runs one command and returns the reply text without its severity
// prefix. An error severity (0..3) comes back as an error; an empty reply is
// ErrEmptyReply, since every command Raw is used for must answer.
func (c *Client) Raw(ctx context.Context, cmd string) (string, error) {
	r, err := c.do(ctx, cmd)
	if err != nil {
		return "", err
	}
	if r.text == "" {
		return "", fmt.Errorf("%s on %s: %w", cmd, c.addr, ErrEmptyReply)
	}
	return r.text, nil
}

// do runs cmd under the client's deadline and parses the severity. An empty
// reply is returned as such: for `set` commands HAProxy answers nothing on
// success, and the callers verify by reading back.
func (c *Client) do(ctx context.Context, cmd string) (reply, error) {
	raw, err := c.send(ctx, cmd)
	if err != nil {
		return reply{}, err
	}
	r := parseReply(raw)
	return r, r.err(cmd)
}

// line runs commands as one command line ("a; b"): HAProxy executes them
// one after the other within one call, with nothing of the caller in
// between. Every command's reply is checked: HAProxy answers each one with
// its own block, so an error of the second one is not at the start.
func (c *Client) line(ctx context.Context, cmds ...string) error {
	raw, err := c.send(ctx, cmds...)
	if err != nil {
		return err
	}
	joined := strings.Join(cmds, "; ")
	for _, l := range strings.Split(raw, "\n") {
		if err := parseReply(l).err(joined); err != nil {
			return err
		}
	}
	return nil
}

// send runs cmds as one command line under the client's deadline and
// returns HAProxy's raw reply. A command may not hold the separator itself.
func (c *Client) send(ctx context.Context, cmds ...string) (string, error) {
	for _, cmd := range cmds {
		if strings.ContainsAny(cmd, ";\n\r") {
			return "", fmt.Errorf("command %q: %w", cmd, ErrInvalidName)
		}
	}
	joined := strings.Join(cmds, "; ")
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	raw, err := c.exec.execute(ctx, joined)
	if err != nil {
		return "", fmt.Errorf("%s on %s: %w", joined, c.addr, err)
	}
	return raw, nil
}

// Ping checks that the socket answers with admin-level access.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Info(ctx)
	return err
}

// unixExecutor goes through client-native. client-native takes no context,
// dials with a fixed 30 s timeout and swallows read errors, so the call runs in
// a goroutine bounded by ctx; a call abandoned at its deadline finishes (or
// times out) in the background.
type unixExecutor struct {
	path string
	rt   *native.SingleRuntime
}

func newUnixExecutor(path string) unixExecutor {
	rt := &native.SingleRuntime{}
	// Init without the check dials nothing and cannot fail.
	_ = rt.Init(path, 0, 0, options.RuntimeOptions{DoNotCheckRuntimeOnInit: true})
	return unixExecutor{path: path, rt: rt}
}

func (u unixExecutor) execute(ctx context.Context, cmd string) (string, error) {
	if _, err := os.Stat(u.path); err != nil {
		return "", fmt.Errorf("%w: %v (is HAProxy running with `stats socket %s level admin`?)", ErrUnreachable, err, u.path)
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := u.rt.ExecuteRaw(cmd)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return "", fmt.Errorf("%w: %v", ErrUnreachable, r.err)
		}
		return r.out, nil
	case <-ctx.Done():
		return "", deadlineErr(ctx)
	}
}

// tcpExecutor speaks the same protocol as client-native over TCP, and unlike
// it reports read errors.
type tcpExecutor struct{ addr string }

func (t tcpExecutor) execute(ctx context.Context, cmd string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		if ctx.Err() != nil {
			return "", deadlineErr(ctx)
		}
		return "", fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, "set severity-output number;"+cmd+"\n"); err != nil {
		return "", t.ioErr(ctx, err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		return "", t.ioErr(ctx, err)
	}
	return string(out), nil
}

func (t tcpExecutor) ioErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return deadlineErr(ctx)
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}

func deadlineErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	return ctx.Err()
}
