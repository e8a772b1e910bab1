package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds one runtime API call when the caller's context has
// no earlier deadline.
const DefaultTimeout = 5 * time.Second

// Client talks to one HAProxy runtime API socket. It is safe for concurrent
// use: every call has a connection of its own, which it closes before it
// returns, also when it times out.
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
	network, path, err := parseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("haproxy socket %q: %w", addr, err)
	}
	c.exec = connExecutor{network: network, addr: path}
	return c, nil
}

// parseAddr splits a socket address as New takes it into a network and an
// address for net.Dial.
func parseAddr(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		return "unix", strings.TrimPrefix(addr, "unix://"), nil
	case strings.HasPrefix(addr, "/"):
		return "unix", addr, nil
	case strings.HasPrefix(addr, "tcp://"):
		addr = strings.TrimPrefix(addr, "tcp://")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", errors.New("want an absolute unix socket path or host:port")
	}
	return "tcp", addr, nil
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

// connExecutor sends each command line on a connection of its own, held by
// the caller's context: the dial, the writes and the reads end at its
// deadline, and when it ends the connection is closed, so nothing of a call
// outlives its return. client-native's SingleRuntime, which this replaces,
// runs a call under its own mutex with a fixed 30 s timeout and a retry and
// takes no context: a call abandoned at its deadline ran on in the
// background, the calls behind it queued on that mutex and were sent long
// after their callers had been told they failed.
//
// Closing is not enough on its own: a stopped or stuck HAProxy 2.6 executes
// a command it reads later from a connection the client has closed. So the
// command is only written once HAProxy has shown that it serves this
// connection: the executor first asks for the interactive prompt and waits
// for it. A call that times out before that has written nothing but
// `prompt`, which changes nothing; one that times out after it has handed
// its command to an HAProxy that was answering.
type connExecutor struct{ network, addr string }

// dialCtx connects to network/addr for one call held by ctx: the
// connection has ctx's deadline and is closed when ctx ends, so a call that
// timed out leaves nothing behind. done closes it.
func dialCtx(ctx context.Context, network, addr string) (conn net.Conn, done func(), err error) {
	var d net.Dialer
	conn, err = d.DialContext(ctx, network, addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, deadlineErr(ctx)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	return conn, func() { stop(); _ = conn.Close() }, nil
}

// maxPrompt bounds what may come before the first prompt.
const maxPrompt = 64

func (e connExecutor) execute(ctx context.Context, cmd string) (string, error) {
	if e.network == "unix" {
		if _, err := os.Stat(e.addr); err != nil {
			return "", fmt.Errorf("%w: %v (is HAProxy running with `stats socket %s level admin`?)", ErrUnreachable, err, e.addr)
		}
	}
	conn, done, err := dialCtx(ctx, e.network, e.addr)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := io.WriteString(conn, "prompt\n"); err != nil {
		return "", ioErr(ctx, err)
	}
	r := bufio.NewReader(conn)
	if err := readPrompt(r); err != nil {
		return "", ioErr(ctx, err)
	}
	if ctx.Err() != nil {
		return "", deadlineErr(ctx)
	}
	if _, err := io.WriteString(conn, "set severity-output number;"+cmd+"\nquit\n"); err != nil {
		return "", ioErr(ctx, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return "", ioErr(ctx, err)
	}
	// In interactive mode every command's output ends with "\n> " where the
	// one-shot mode ends it with "\n": the reply reads the same either way.
	return strings.ReplaceAll(string(out), "\n> ", "\n"), nil
}

// readPrompt reads HAProxy's answer to `prompt` up to its "> ".
func readPrompt(r *bufio.Reader) error {
	var last byte
	for i := 0; i < maxPrompt; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		if last == '>' && b == ' ' {
			return nil
		}
		last = b
	}
	return fmt.Errorf("no prompt in the first %d bytes of the reply to `prompt`: %w", maxPrompt, ErrMalformed)
}

func ioErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return deadlineErr(ctx)
	case errors.Is(err, os.ErrDeadlineExceeded): // the conn's deadline is ctx's, a tick earlier
		return ErrTimeout
	case errors.Is(err, ErrMalformed):
		return err
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: the connection closed before HAProxy answered", ErrUnreachable)
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}

func deadlineErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	return ctx.Err()
}
