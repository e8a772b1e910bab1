// Package daemon runs the agent as a daemon: it serves an *agent.Agent over
// gRPC on the coordinator's TCP listener (mutual TLS) and on the local unix
// socket of the haroll CLI, tells systemd when it is ready and when it stops,
// pings systemd's watchdog while the agent can do its job, and on shutdown
// lets the replacement in progress finish or roll back before it stops the
// servers. It owns the agent's start and stop, not what the agent does:
// the CLI's `haroll agent` only loads the configuration and wires.
package daemon
