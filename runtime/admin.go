package runtime

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Admin is a server's administrative side, from `show servers state`. Unlike
// `show stat`, it tells drain and maintenance apart from the health status
// (a DOWN server in drain shows "DOWN" in `show stat`), and it still says
// whether checks are configured while the server is in maintenance.
type Admin struct {
	State State
	// Checked: health checks are configured for the server.
	Checked bool
}

// srv_admin_state and srv_check_state bits (HAProxy include/haproxy/server-t.h, check-t.h).
// Maintenance is SRV_ADMF_MAINT (0x23): forced, inherited, resolution failure.
// Not SRV_ADMF_CMAINT (0x04): a server declared `disabled` gets it with the
// forced bit, and `enable server` (or `state ready`) clears only the forced
// one, so a `disabled` server serving since shows 4, in 2.6 and 3.0 alike,
// also after a reload that loaded it from a server-state file. Nor
// SRV_ADMF_HMAINT (0x40): its FQDN was set over the runtime API.
const (
	admMaint        = 0x01 | 0x02 | 0x20 // forced, inherited, resolution
	admDrain        = 0x08 | 0x10        // forced, inherited
	chkStConfigured = 0x02
)

// Admin returns the administrative state of one server.
func (c *Client) Admin(ctx context.Context, backend, server string) (Admin, error) {
	if _, err := serverRef(backend, server); err != nil {
		return Admin{}, err
	}
	cmd := "show servers state " + backend
	out, err := c.Raw(ctx, cmd)
	if err != nil {
		if strings.Contains(err.Error(), "Can't find backend") {
			return Admin{}, fmt.Errorf("%s: %w", cmd, ErrNoSuchBackend)
		}
		return Admin{}, err
	}
	return parseAdmin(out, backend, server)
}

func parseAdmin(out, backend, server string) (Admin, error) {
	var header []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "# ") {
			header = strings.Fields(strings.TrimPrefix(line, "# "))
			continue
		}
		if header == nil || line == "" {
			continue
		}
		f := strings.Fields(line)
		col := func(name string) string {
			for i, h := range header {
				if h == name && i < len(f) {
					return f[i]
				}
			}
			return ""
		}
		if col("be_name") != backend || col("srv_name") != server {
			continue
		}
		adm, err1 := strconv.Atoi(col("srv_admin_state"))
		chk, err2 := strconv.Atoi(col("srv_check_state"))
		if err1 != nil || err2 != nil {
			return Admin{}, fmt.Errorf("show servers state %s: line %q: %w", backend, line, ErrMalformed)
		}
		a := Admin{State: StateReady, Checked: chk&chkStConfigured != 0}
		switch {
		case adm&admMaint != 0:
			a.State = StateMaint
		case adm&admDrain != 0:
			a.State = StateDrain
		}
		return a, nil
	}
	if header == nil {
		return Admin{}, fmt.Errorf("show servers state %s: no header: %w", backend, ErrMalformed)
	}
	return Admin{}, fmt.Errorf("server %s/%s: %w", backend, server, ErrNoSuchServer)
}
