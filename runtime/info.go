package runtime

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Info is the part of `show info` that identifies the running worker.
type Info struct {
	Version   string
	Pid       int
	UptimeSec int
}

// Reloaded reports whether after describes another HAProxy process than
// before: a reload or restart happened in between, and every runtime change
// made before it (weight, state, address) is gone unless a server-state-file
// carried it over.
func (before Info) Reloaded(after Info) bool {
	return before.Pid != after.Pid || after.UptimeSec < before.UptimeSec
}

// Info runs `show info`.
func (c *Client) Info(ctx context.Context) (Info, error) {
	out, err := c.Raw(ctx, "show info")
	if err != nil {
		return Info{}, err
	}
	return parseInfo(out)
}

func parseInfo(out string) (Info, error) {
	var info Info
	var havePid, haveUptime bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Version":
			info.Version = val
		case "Pid":
			info.Pid, err = strconv.Atoi(val)
			havePid = true
		case "Uptime_sec":
			info.UptimeSec, err = strconv.Atoi(val)
			haveUptime = true
		}
		if err != nil {
			return Info{}, fmt.Errorf("show info: %s=%q: %w", key, val, ErrMalformed)
		}
	}
	if !havePid || !haveUptime {
		return Info{}, fmt.Errorf("show info: no Pid or Uptime_sec: %w", ErrMalformed)
	}
	return info, nil
}
