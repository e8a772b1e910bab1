package runtime

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	native "github.com/haproxytech/client-native/v5/runtime"
)

// State is a server's administrative state as `set server ... state` takes it.
type State string

const (
	StateReady State = "ready"
	StateDrain State = "drain"
	StateMaint State = "maint"
)

// Weight returns the current and initial (configured) weight of a server,
// from `get weight`, which answers "0 (initial 7)".
func (c *Client) Weight(ctx context.Context, backend, server string) (current, initial int, err error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return 0, 0, err
	}
	out, err := c.Raw(ctx, "get weight "+ref)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(out, "%d (initial %d)", &current, &initial); err != nil {
		return 0, 0, fmt.Errorf("get weight %s: %q: %w", ref, out, ErrMalformed)
	}
	return current, initial, nil
}

// SetWeight sets an absolute weight (0..256) and reads it back; a different
// value read back is ErrMismatch.
func (c *Client) SetWeight(ctx context.Context, backend, server string, weight int) error {
	ref, err := serverRef(backend, server)
	if err != nil {
		return err
	}
	if weight < 0 || weight > 256 {
		return fmt.Errorf("set weight %s %d: weight must be 0..256: %w", ref, weight, ErrCommand)
	}
	if err := c.set(ctx, fmt.Sprintf("set weight %s %d", ref, weight)); err != nil {
		return err
	}
	got, _, err := c.Weight(ctx, backend, server)
	if err != nil {
		return fmt.Errorf("read back weight of %s: %w", ref, err)
	}
	if got != weight {
		return fmt.Errorf("set weight %s %d: read back %d: %w", ref, weight, got, ErrMismatch)
	}
	return nil
}

// SetState sets the administrative state and reads it back from `show stat`.
func (c *Client) SetState(ctx context.Context, backend, server string, state State) error {
	ref, err := serverRef(backend, server)
	if err != nil {
		return err
	}
	if !native.ServerStateValid(string(state)) {
		return fmt.Errorf("set state %s %q: want ready, drain or maint: %w", ref, state, ErrCommand)
	}
	cmd := fmt.Sprintf("set server %s state %s", ref, state)
	if err := c.set(ctx, cmd); err != nil {
		return err
	}
	return c.readBackState(ctx, backend, server, cmd, state)
}

// readBackState checks that the server's administrative state is want
// after cmd.
func (c *Client) readBackState(ctx context.Context, backend, server, cmd string, want State) error {
	a, err := c.Admin(ctx, backend, server)
	if err != nil {
		return fmt.Errorf("read back state of %s/%s: %w", backend, server, err)
	}
	if a.State != want {
		return fmt.Errorf("%s: read back %s: %w", cmd, a.State, ErrMismatch)
	}
	return nil
}

// SetAddr points a server at ip:port and reads the address back. HAProxy
// reports both success ("IP changed from ...") and failure ("Invalid addr")
// as severity-4 notices, so the reply alone proves nothing.
func (c *Client) SetAddr(ctx context.Context, backend, server, ip string, port int) error {
	ref, err := serverRef(backend, server)
	if err != nil {
		return err
	}
	parsed := net.ParseIP(ip)
	if parsed == nil || port <= 0 || port > 65535 {
		return fmt.Errorf("set server %s addr %q port %d: not an IP address and port: %w", ref, ip, port, ErrCommand)
	}
	cmd := fmt.Sprintf("set server %s addr %s port %d", ref, parsed, port)
	r, err := c.do(ctx, cmd)
	if err != nil {
		return err
	}
	// HAProxy 3.0 applies the change a moment after it answers (2.6 before):
	// the read-back is given addrSettle to show it.
	want := net.JoinHostPort(parsed.String(), strconv.Itoa(port))
	deadline := time.Now().Add(addrSettle)
	for {
		s, err := c.Server(ctx, backend, server)
		if err != nil {
			return fmt.Errorf("read back address of %s: %w", ref, err)
		}
		if s.Addr == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: haproxy said %q, address is %s: %w", cmd, r.text, s.Addr, ErrMismatch)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: haproxy said %q, address is %s: %w", cmd, r.text, s.Addr, ErrMismatch)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// addrSettle is how long SetAddr waits for HAProxy to show a new address.
const addrSettle = time.Second

// ForceHealthDown marks the server DOWN and resets its check counter, so it
// only comes back UP after `rise` fresh successful checks.
func (c *Client) ForceHealthDown(ctx context.Context, backend, server string) error {
	ref, err := serverRef(backend, server)
	if err != nil {
		return err
	}
	cmd := "set server " + ref + " health down"
	if err := c.set(ctx, cmd); err != nil {
		return err
	}
	return c.readBackHealthDown(ctx, backend, server, cmd)
}

// readBackHealthDown checks that the server's health counter was reset by
// cmd. A check may complete between the command and the read-back and count
// one success already (with rise 1 that is UP): more cannot be.
func (c *Client) readBackHealthDown(ctx context.Context, backend, server, cmd string) error {
	s, err := c.Server(ctx, backend, server)
	if err != nil {
		return fmt.Errorf("read back health of %s/%s: %w", backend, server, err)
	}
	if s.CheckHealth > 1 {
		return fmt.Errorf("%s: check health is %d (rise %d, fall %d): %w", cmd, s.CheckHealth, s.CheckRise, s.CheckFall, ErrMismatch)
	}
	return nil
}

// LeaveMaint takes the server out of maintenance into state to (ready or
// drain) and forces its health down in the same command line, so it never
// passes through the instant UP that leaving maintenance alone gives (HAProxy
// sets the check health to rise on the way out): it stays DOWN until `rise`
// fresh checks pass. Both effects are read back; a server that is already out
// of maintenance is forced down all the same.
func (c *Client) LeaveMaint(ctx context.Context, backend, server string, to State) error {
	ref, err := serverRef(backend, server)
	if err != nil {
		return err
	}
	if to != StateReady && to != StateDrain {
		return fmt.Errorf("leave maintenance of %s to %q: want ready or drain: %w", ref, to, ErrCommand)
	}
	state, down := "set server "+ref+" state "+string(to), "set server "+ref+" health down"
	if err := c.line(ctx, state, down); err != nil {
		return err
	}
	if err := c.readBackState(ctx, backend, server, state, to); err != nil {
		return err
	}
	return c.readBackHealthDown(ctx, backend, server, down)
}

// ShutdownSessions closes every session on the server
// (`shutdown sessions server`).
func (c *Client) ShutdownSessions(ctx context.Context, backend, server string) error {
	ref, err := serverRef(backend, server)
	if err != nil {
		return err
	}
	return c.set(ctx, "shutdown sessions server "+ref)
}

// set runs a command that answers nothing on success. Any error-severity
// reply fails; a non-empty informational reply is tolerated and the callers
// verify the effect by reading it back.
func (c *Client) set(ctx context.Context, cmd string) error {
	_, err := c.do(ctx, cmd)
	return err
}
