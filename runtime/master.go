package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Master talks to HAProxy's master CLI (`haproxy -W -S <socket>`), which
// knows every worker of the process tree, also the old ones a reload left
// finishing their sessions: the stats socket reaches only the current one.
type Master struct {
	network, addr string
	timeout       time.Duration
}

// NewMaster returns a client for the master CLI at addr, written as New
// takes a stats socket. It does no I/O. timeout bounds each call (0 means
// DefaultTimeout).
func NewMaster(addr string, timeout time.Duration) (*Master, error) {
	network, path, err := parseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("haproxy master socket %q: %w", addr, err)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Master{network: network, addr: path, timeout: timeout}, nil
}

// Proc is one process `show proc` lists.
type Proc struct {
	Pid int
	// Reloads is how many reloads the process has lived through: 0 for the
	// current worker, at least 1 for an old one.
	Reloads int
}

// Procs is the master CLI's `show proc`. Pids are in HAProxy's own pid
// namespace, the one `show info` reports the worker's Pid in.
type Procs struct {
	Master  int
	Workers []Proc // the current worker(s)
	Old     []Proc // workers replaced by a reload that still run
}

// Listed reports whether pid is one of the workers, current or old.
func (p Procs) Listed(pid int) (current, old bool) {
	for _, w := range p.Workers {
		current = current || w.Pid == pid
	}
	for _, w := range p.Old {
		old = old || w.Pid == pid
	}
	return current, old
}

// Procs runs `show proc`. A reply without the master's line is ErrMalformed:
// the socket is not a master CLI.
func (m *Master) Procs(ctx context.Context) (Procs, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	out, err := m.exec(ctx, "show proc")
	if err != nil {
		return Procs{}, fmt.Errorf("show proc on %s: %w", m.addr, err)
	}
	p, err := parseProcs(out)
	if err != nil {
		return Procs{}, fmt.Errorf("show proc on %s: %w", m.addr, err)
	}
	return p, nil
}

// exec sends one command and reads the reply to the end, on a connection
// held by ctx. The master CLI answers once it has seen the end of the input.
// Only reads go through here: a read that timed out and is answered later
// changes nothing.
func (m *Master) exec(ctx context.Context, cmd string) (string, error) {
	conn, done, err := dialCtx(ctx, m.network, m.addr)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", ioErr(ctx, err)
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return "", ioErr(ctx, err)
		}
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		return "", ioErr(ctx, err)
	}
	return string(out), nil
}

// parseProcs reads `show proc` of HAProxy 2.6 and 3.0:
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	1234            master          1 [failed: 0]   0d00h00m04s     2.6.12
//	# workers
//	1301            worker          0               0d00h00m02s     2.6.12
//	# old workers
//	1240            worker          1               0d00h00m04s     2.6.12
//	# programs
func parseProcs(out string) (Procs, error) {
	var p Procs
	section := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "#<PID>"):
			continue
		case strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return Procs{}, fmt.Errorf("line %q: %w", line, ErrMalformed)
		}
		pid, err1 := strconv.Atoi(f[0])
		reloads, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			return Procs{}, fmt.Errorf("line %q: %w", line, ErrMalformed)
		}
		proc := Proc{Pid: pid, Reloads: reloads}
		switch {
		case f[1] == "master" && section == "":
			p.Master = pid
		case f[1] == "worker" && section == "workers":
			p.Workers = append(p.Workers, proc)
		case f[1] == "worker" && section == "old workers":
			p.Old = append(p.Old, proc)
		}
	}
	if p.Master == 0 {
		return Procs{}, fmt.Errorf("no master line in %q: not a master CLI: %w", strings.TrimSpace(out), ErrMalformed)
	}
	return p, nil
}
