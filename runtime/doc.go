// Package runtime speaks the HAProxy runtime API (the stats socket) for haroll.
//
// It owns the text protocol: building commands, the severity prefix of replies
// ("[N]: ..."), and the `show stat` / `show info` formats of HAProxy 2.6. Unix
// sockets go through github.com/haproxytech/client-native/v5; TCP sockets
// ("host:port") through a small dialer that speaks the same protocol, because
// client-native v5.1.15 only dials unix sockets.
//
// Every call takes a context and has its own deadline. An empty or truncated
// reply, a hang, or a warning that reports a failure is an error, never
// success; every change is read back. The package knows nothing of Docker or
// slots and does not log.
package runtime
