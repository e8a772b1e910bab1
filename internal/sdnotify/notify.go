package sdnotify

import (
	"fmt"
	"os"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready tells systemd that start-up is finished (READY=1).
// It returns nil without doing anything when $NOTIFY_SOCKET is unset, and an
// error naming the socket when the send fails.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Stopping tells systemd that shutdown has begun (STOPPING=1), with the same
// contract as Ready.
func Stopping() error { return notify(daemon.SdNotifyStopping) }

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s to NOTIFY_SOCKET=%s: %w", state, os.Getenv("NOTIFY_SOCKET"), err)
	}
	return nil
}
