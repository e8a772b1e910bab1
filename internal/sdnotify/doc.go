// Package sdnotify tells systemd about the agent's life cycle (sd_notify(3)): READY=1 once the agent
// serves, so that `Type=notify` units and whatever is ordered after them start only then, and
// STOPPING=1 when it begins to shut down. Without $NOTIFY_SOCKET (not run by systemd) every call is a
// no-op. The package also holds the test of configs/haroll-agent.service.
package sdnotify
