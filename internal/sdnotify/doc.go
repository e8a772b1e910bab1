// Package sdnotify tells systemd about the agent's life cycle (sd_notify(3)) through
// github.com/coreos/go-systemd/v22/daemon: READY=1 once the agent serves, so that `Type=notify`
// units and whatever is ordered after them start only then, STOPPING=1 when it begins to shut down,
// and WATCHDOG=1 at half the unit's WatchdogSec= while a health check passes, so that systemd
// restarts an agent that hangs. Without $NOTIFY_SOCKET (not run by systemd) every call is a no-op.
package sdnotify
