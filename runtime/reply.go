package runtime

import (
	"fmt"
	"strconv"
	"strings"
)

// reply is one answer of the runtime API with `set severity-output number`.
type reply struct {
	severity int // -1 when the reply has no "[N]:" prefix
	text     string
}

// parseReply splits the severity prefix off a raw reply. HAProxy prefixes
// messages with "[N]: " where N is a syslog severity (0 emerg .. 7 debug);
// data (show stat, get weight) carries no prefix.
func parseReply(raw string) reply {
	s := strings.TrimSpace(raw)
	if len(s) >= 4 && s[0] == '[' && s[2] == ']' && s[3] == ':' {
		if n, err := strconv.Atoi(s[1:2]); err == nil {
			return reply{severity: n, text: strings.TrimSpace(s[4:])}
		}
	}
	return reply{severity: -1, text: s}
}

// isError reports a reply with an error severity (0..3).
func (r reply) isError() bool { return r.severity >= 0 && r.severity <= 3 }

// err maps an error reply onto the package's sentinels, naming the command.
func (r reply) err(cmd string) error {
	if !r.isError() {
		return nil
	}
	switch {
	case strings.Contains(r.text, "No such server"):
		return fmt.Errorf("%s: %s: %w", cmd, r.text, ErrNoSuchServer)
	case strings.Contains(r.text, "No such backend"), strings.Contains(r.text, "No such proxy"):
		return fmt.Errorf("%s: %s: %w", cmd, r.text, ErrNoSuchBackend)
	}
	return fmt.Errorf("%s: %s: %w", cmd, r.text, ErrCommand)
}
