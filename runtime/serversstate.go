package runtime

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// ServersState returns the reply of `show servers state` for every backend,
// as HAProxy loads it back from a `server-state-file` at a (re)load: the
// format version on the first line ("1"), a "# be_id be_name ..." header,
// then one line per server, ending with a newline. A reply that does not
// start with a version number is ErrMalformed: written to the state file it
// would make the next reload ignore every server's state.
func (c *Client) ServersState(ctx context.Context) (string, error) {
	const cmd = "show servers state"
	out, err := c.Raw(ctx, cmd)
	if err != nil {
		return "", err
	}
	if err := CheckServersState(out); err != nil {
		return "", fmt.Errorf("%s on %s: %w", cmd, c.addr, err)
	}
	return out + "\n", nil // Raw trims the reply's last newline
}

// CheckServersState reports whether text reads as `show servers state`
// (and a server-state-file): its first line a version number, its second a
// "# " header naming be_name and srv_name. Anything else is ErrMalformed.
func CheckServersState(text string) error {
	lines := strings.SplitN(text, "\n", 3)
	if _, err := strconv.Atoi(strings.TrimSpace(lines[0])); err != nil {
		return fmt.Errorf("servers state: first line %q is not a version number: %w", truncate(lines[0]), ErrMalformed)
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") ||
		!strings.Contains(lines[1], " be_name ") || !strings.Contains(lines[1], " srv_name ") {
		return fmt.Errorf("servers state: no \"# be_id be_name ...\" header on the second line: %w", ErrMalformed)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
