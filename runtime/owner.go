package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// ErrNoOwner: the socket cannot say which process serves it (a TCP socket,
// or an operating system without SO_PEERCRED).
var ErrNoOwner = errors.New("the socket does not tell which process serves it")

// SocketOwner returns the pid of the process that opened the stats socket
// for listening, as the kernel reports it in this process's pid namespace
// (SO_PEERCRED): HAProxy's master, or the worker itself without -W. It is 0
// when that process is not visible from here (HAProxy in a container the
// agent's namespace cannot see into). A TCP socket is ErrNoOwner. It sends
// no command.
func (c *Client) SocketOwner(ctx context.Context) (int, error) {
	network, addr, err := parseAddr(c.addr)
	if err != nil {
		return 0, err
	}
	if network != "unix" {
		return 0, fmt.Errorf("%s is a TCP socket: %w", c.addr, ErrNoOwner)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		if ctx.Err() != nil {
			return 0, deadlineErr(ctx)
		}
		return 0, fmt.Errorf("%s: %w: %v", c.addr, ErrUnreachable, err)
	}
	defer conn.Close()
	pid, err := peerPid(conn.(*net.UnixConn))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", c.addr, err)
	}
	return pid, nil
}
