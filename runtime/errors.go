package runtime

import "errors"

var (
	// ErrUnreachable: the socket could not be dialled.
	ErrUnreachable = errors.New("haproxy runtime socket unreachable")
	// ErrTimeout: the call did not complete before its deadline.
	ErrTimeout = errors.New("haproxy runtime call timed out")
	// ErrEmptyReply: a command that must answer returned nothing, which
	// client-native also returns when the connection broke mid-read.
	ErrEmptyReply = errors.New("empty reply from haproxy")
	// ErrNoSuchBackend: HAProxy does not know the backend.
	ErrNoSuchBackend = errors.New("no such backend")
	// ErrNoSuchServer: HAProxy does not know the server in that backend.
	ErrNoSuchServer = errors.New("no such server")
	// ErrCommand: HAProxy refused the command (an error severity, or a
	// warning that reports a failure).
	ErrCommand = errors.New("haproxy refused the command")
	// ErrMismatch: a change was accepted but reading it back shows another value.
	ErrMismatch = errors.New("haproxy read-back does not match")
	// ErrInvalidName: a backend or server name would break the text protocol.
	ErrInvalidName = errors.New("invalid backend or server name")
	// ErrMalformed: a reply could not be parsed.
	ErrMalformed = errors.New("malformed reply from haproxy")
)
