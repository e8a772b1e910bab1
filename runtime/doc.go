// Package runtime speaks the HAProxy runtime API (the stats socket) for haroll.
//
// It owns the text protocol: building commands, the severity prefix of replies
// ("[N]: ..."), and the `show stat` / `show info` formats of HAProxy 2.6. Each
// call dials the socket (unix or TCP) on a connection of its own that its
// context holds: it is closed when the call ends, and the command is written
// only after HAProxy has answered a `prompt` on it, so a call that timed out
// is never run later (connExecutor). client-native v5's SingleRuntime cannot
// be used for the I/O: it takes no context and queues calls behind a 30 s
// timeout and a retry. The server states it takes come from client-native.
//
// Every call takes a context and has its own deadline. An empty or truncated
// reply, a hang, or a warning that reports a failure is an error, never
// success; every change is read back. The package knows nothing of Docker or
// slots and does not log.
package runtime
