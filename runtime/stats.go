package runtime

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ServerStat is one server's line of `show stat`.
type ServerStat struct {
	Backend, Server string
	// Status is HAProxy's status column: "UP", "DOWN", "DRAIN", "MAINT",
	// "no check", or a transition such as "UP 1/2".
	Status string
	Weight int
	Scur   int // current sessions
	Qcur   int // requests queued for this server
	// CheckStatus is the last health check result ("L7OK", "L4CON", ...). It
	// survives `set server health down` and address changes: it can be stale.
	CheckStatus string
	CheckHealth int // health counter: rise+fall-1 means fully up
	CheckRise   int
	CheckFall   int
	Addr        string // "ip:port"
	Checked     bool   // the server has health checks enabled
	ID          int    // the server's numeric id in its backend (sid)
	Counters    Counters
}

// Counters are a server's cumulative traffic counters since HAProxy (the
// worker) started: they go back to zero on a reload or restart.
type Counters struct {
	// Responses is every HTTP response the server sent (hrsp_1xx .. hrsp_5xx
	// and hrsp_other); HAProxy keeps no per-server request count.
	Responses int64 `json:"responses"`
	Hrsp5xx   int64 `json:"hrsp_5xx"`
	Econ      int64 `json:"econ"`  // connections to the server that failed
	Eresp     int64 `json:"eresp"` // responses that failed (aborted, invalid)
}

// Drained reports no live session and no queued request.
func (s ServerStat) Drained() bool { return s.Scur == 0 && s.Qcur == 0 }

// InMaint reports a server in maintenance ("MAINT", or "MAINT (resolution)"
// and the like): HAProxy selects it for no request.
func (s ServerStat) InMaint() bool { return strings.HasPrefix(s.Status, "MAINT") }

// FullyUp reports a server that passed enough consecutive checks to be up
// with a full health counter. After `set server health down` this only
// becomes true again after `rise` fresh successful checks.
func (s ServerStat) FullyUp() bool {
	if !s.Checked || s.CheckRise <= 0 {
		return false
	}
	up := s.Status == "UP" || s.Status == "DRAIN"
	return up && s.CheckHealth >= s.CheckRise+s.CheckFall-1 && strings.HasSuffix(s.CheckStatus, "OK")
}

// Serving reports a server that takes new traffic: up by its checks (or
// unchecked), not drained or in maintenance, and with a non-zero weight.
func (s ServerStat) Serving() bool {
	switch {
	case s.Weight == 0:
		return false
	case s.Status == "UP", s.Status == "no check", strings.HasPrefix(s.Status, "UP "):
		return true
	}
	return false
}

// Backend returns the server lines of backend (`show stat <backend> 4 -1`).
// An unknown backend is ErrNoSuchBackend.
func (c *Client) Backend(ctx context.Context, backend string) ([]ServerStat, error) {
	if err := ValidateName("backend", backend); err != nil {
		return nil, err
	}
	cmd := "show stat " + backend + " 4 -1"
	out, err := c.Raw(ctx, cmd)
	if err != nil {
		return nil, err
	}
	all, err := parseStat(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	// `show stat <name>` matches by name or numeric id; keep only this backend.
	servers := all[:0]
	for _, s := range all {
		if s.Backend == backend {
			servers = append(servers, s)
		}
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("backend %q has no servers: %w", backend, ErrNoSuchBackend)
	}
	c.rememberIDs(servers)
	return servers, nil
}

// Server returns one server's line of `show stat`. Unknown names give
// ErrNoSuchBackend or ErrNoSuchServer. Once the server's numeric id is known
// (from an earlier read of its backend), only its own line is asked for
// (`show stat <backend> 4 <sid>`), whatever the size of the backend; a line
// that does not name it (ids change when a reload brings another config)
// falls back to reading the whole backend.
func (c *Client) Server(ctx context.Context, backend, server string) (ServerStat, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return ServerStat{}, err
	}
	c.mu.Lock()
	sid, known := c.sids[ref]
	c.mu.Unlock()
	if known {
		out, err := c.Raw(ctx, "show stat "+backend+" 4 "+strconv.Itoa(sid))
		if err != nil {
			return ServerStat{}, err
		}
		if stats, err := parseStat(out); err == nil && len(stats) == 1 && stats[0].Backend == backend && stats[0].Server == server {
			return stats[0], nil
		}
	}
	all, err := c.Backend(ctx, backend)
	if err != nil {
		return ServerStat{}, err
	}
	for _, s := range all {
		if s.Server == server {
			return s, nil
		}
	}
	return ServerStat{}, fmt.Errorf("server %s/%s: %w", backend, server, ErrNoSuchServer)
}

// rememberIDs records the numeric ids of servers, for Server.
func (c *Client) rememberIDs(servers []ServerStat) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sids == nil {
		c.sids = map[string]int{}
	}
	for _, s := range servers {
		if s.ID > 0 {
			c.sids[s.Backend+"/"+s.Server] = s.ID
		}
	}
}

// parseStat parses `show stat` CSV by its header, so columns added by other
// HAProxy versions do not shift the ones read here. Frontend and backend
// aggregate lines are skipped.
func parseStat(out string) ([]ServerStat, error) {
	out = strings.TrimSpace(out)
	if !strings.HasPrefix(out, "# ") {
		return nil, fmt.Errorf("no `# pxname,...` header: %w", ErrMalformed)
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true // the field strings stay valid; only the slice is reused
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	col := make(map[string]int, len(header))
	for i, name := range header {
		col[name] = i
	}
	for _, need := range []string{"pxname", "svname", "qcur", "scur", "status", "weight", "check_status", "addr"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("column %q missing: %w", need, ErrMalformed)
		}
	}
	var stats []ServerStat
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, ErrMalformed)
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(row) {
				return row[i]
			}
			return ""
		}
		num := func(name string) (int, error) {
			v := get(name)
			if v == "" {
				return 0, nil
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("%s=%q for %s/%s: %w", name, v, get("pxname"), get("svname"), ErrMalformed)
			}
			return n, nil
		}
		if sv := get("svname"); sv == "FRONTEND" || sv == "BACKEND" || sv == "" {
			continue
		}
		s := ServerStat{
			Backend:     get("pxname"),
			Server:      get("svname"),
			Status:      get("status"),
			CheckStatus: get("check_status"),
			Addr:        get("addr"),
			Checked:     get("status") != "no check" && get("check_rise") != "",
		}
		var errs [8]error
		s.Weight, errs[0] = num("weight")
		s.Scur, errs[1] = num("scur")
		s.Qcur, errs[2] = num("qcur")
		s.CheckHealth, errs[3] = num("check_health")
		s.CheckRise, errs[4] = num("check_rise")
		s.CheckFall, errs[5] = num("check_fall")
		s.ID, errs[6] = num("sid")
		s.Counters, errs[7] = counters(get)
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		stats = append(stats, s)
	}
	return stats, nil
}

// responseColumns are the per-status response counters of a server line.
var responseColumns = [...]string{"hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other"}

// counters reads a server line's traffic counters; an empty column is 0.
func counters(get func(string) string) (Counters, error) {
	var c Counters
	for _, name := range responseColumns {
		n, err := counter(get, name)
		if err == nil && c.Responses > math.MaxInt64-n {
			err = fmt.Errorf("%s=%q for %s/%s: the counters overflow: %w", name, get(name), get("pxname"), get("svname"), ErrMalformed)
		}
		if err != nil {
			return c, err
		}
		c.Responses += n
	}
	var errs [3]error
	c.Hrsp5xx, errs[0] = counter(get, "hrsp_5xx")
	c.Econ, errs[1] = counter(get, "econ")
	c.Eresp, errs[2] = counter(get, "eresp")
	return c, errors.Join(errs[:]...)
}

// counter reads one non-negative counter column; an empty one is 0.
func counter(get func(string) string, name string) (int64, error) {
	v := get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q for %s/%s: %w", name, v, get("pxname"), get("svname"), ErrMalformed)
	}
	return n, nil
}
