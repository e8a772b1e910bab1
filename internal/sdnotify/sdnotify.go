package sdnotify

import (
	"fmt"
	"net"
	"os"
	"time"
)

// sendTimeout bounds a write to a notify socket nobody reads; a datagram send should never block.
const sendTimeout = 2 * time.Second

// Ready tells systemd that start-up is finished: Notify("READY=1").
func Ready() error { return Notify("READY=1") }

// Stopping tells systemd that shutdown has begun: Notify("STOPPING=1").
func Stopping() error { return Notify("STOPPING=1") }

// Notify sends state (newline-separated VAR=value assignments, see sd_notify(3)) as one datagram to the
// unix socket named by $NOTIFY_SOCKET; a name starting with '@' is an abstract socket. It returns nil
// without doing anything when $NOTIFY_SOCKET is unset or empty, and an error naming the socket when
// the send fails.
func Notify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] != '/' && name[0] != '@' {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET=%q is not a unix socket path or abstract name", name)
	}
	// Go maps a leading '@' to the abstract namespace's NUL byte itself.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", name, err)
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(sendTimeout))
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: send %q: %w", name, state, err)
	}
	return nil
}
