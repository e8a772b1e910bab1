package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/haroll/haroll/runtime"
)

// After a reload the old HAProxy worker keeps serving the sessions it had,
// which the new worker's stats socket does not show: `show stat` there counts
// only the new worker's, and the old worker's socket is gone. No command of
// the stats socket tells whether an old worker still runs. A drain is only
// over once the old workers replaced during it have exited, and there are two
// faithful ways to see that: the master CLI's `show proc`, which lists them
// until they exit, or their processes, when they are in the agent's pid
// namespace. `show info` reports the worker's pid in HAProxy's own namespace:
// with HAProxy in a container it names another process on the agent's host,
// so it is only taken for a process here once that is proven.

// MasterCLI is the part of HAProxy's master CLI the agent uses
// (runtime.Master).
type MasterCLI interface {
	Procs(ctx context.Context) (runtime.Procs, error)
}

// WithMaster makes the agent follow the HAProxy workers a reload replaces
// through the master CLI (haproxy.master_socket).
func WithMaster(m MasterCLI) Option {
	return func(a *Agent) { a.master = m }
}

// trackMode is how the end of an HAProxy worker replaced by a reload is seen.
type trackMode int

const (
	trackUndecided trackMode = iota // not decided yet: decided at first need
	trackOff                        // not seen: a drain cannot wait for it
	trackMaster                     // the master CLI's `show proc` no longer lists it
	trackLocal                      // its process, in the agent's pid namespace, has exited
)

// tracking is how a replacement follows old workers.
type tracking struct {
	mode trackMode
	why  string // trackOff: why, and what to configure
}

// oldWorker is a worker replaced by a reload while a slot was out.
type oldWorker struct {
	pid int
	// start is its start time in /proc (trackLocal; 0 when it could not be
	// read): a process with the pid and another start time is not it.
	start uint64
}

// reloadTrackingOff is the warning preflight gives when old workers cannot
// be followed.
const reloadTrackingOff = "reload tracking is off"

// reloadTracking decides how old workers are followed on this host. A master
// socket that is configured must answer and belong to the HAProxy the stats
// socket reaches, or it is an error. Without one, the worker's pid is used
// only when it is proven to be in the agent's pid namespace; otherwise
// tracking is off, and why says so and what to configure.
func (a *Agent) reloadTracking(ctx context.Context) (tracking, error) {
	info, err := a.haproxy.Info(ctx)
	if err != nil {
		return tracking{}, err
	}
	var masterWhy string
	if a.master != nil {
		err := a.checkMaster(ctx, info)
		switch {
		case err == nil:
			return tracking{mode: trackMaster}, nil
		case a.cfg.HAProxy.MasterSocket != DefaultMasterSocket:
			return tracking{}, err
		}
		masterWhy = fmt.Sprintf(" (the default %v)", err)
	}
	owner, err := a.haproxy.SocketOwner(ctx)
	if err != nil && !errors.Is(err, runtime.ErrNoOwner) {
		return tracking{}, err
	}
	why := ""
	if err != nil {
		why = err.Error() + ", so haroll cannot tell whether the worker's pid from `show info` is a process here"
	} else {
		why = a.procfs.notLocal(owner, info.Pid)
	}
	if why != "" {
		return tracking{mode: trackOff, why: fmt.Sprintf("%s: %s; after an HAProxy reload during a drain haroll cannot wait for the old worker's sessions to end: set haproxy.master_socket to HAProxy's master CLI (`haproxy -W -S <socket>`)%s", reloadTrackingOff, why, masterWhy)}, nil
	}
	return tracking{mode: trackLocal}, nil
}

// checkMaster checks that the master CLI answers and is the master of the
// worker behind the stats socket.
func (a *Agent) checkMaster(ctx context.Context, info runtime.Info) error {
	p, err := a.master.Procs(ctx)
	if err != nil {
		return fmt.Errorf("haproxy.master_socket %s: %w: check that HAProxy runs in master-worker mode with `-S %s` and that haroll may open it, or set haproxy.master_socket to \"\"", a.cfg.HAProxy.MasterSocket, err, a.cfg.HAProxy.MasterSocket)
	}
	if cur, _ := p.Listed(info.Pid); !cur {
		return fmt.Errorf("haproxy.master_socket %s lists the workers %v, but haproxy.socket is served by worker %d: the two sockets belong to different HAProxy instances; set both to the same one's", a.cfg.HAProxy.MasterSocket, pids(p.Workers), info.Pid)
	}
	return nil
}

func pids(ps []runtime.Proc) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.Pid
	}
	return out
}

// track returns how this replacement follows old workers, deciding it now
// when preflight did not (a recovery). An error leaves tracking off, saying
// why.
func (r *replacement) track(ctx context.Context) tracking {
	w := &r.reload
	w.tmu.Lock()
	defer w.tmu.Unlock()
	if w.track.mode == trackUndecided {
		w.track = r.p.track
	}
	if w.track.mode != trackUndecided {
		return w.track
	}
	t, err := r.a.reloadTracking(ctx)
	if err != nil {
		t = tracking{mode: trackOff, why: fmt.Sprintf("%s: %v", reloadTrackingOff, err)}
	}
	if t.mode == trackOff {
		r.log.Warn(t.why)
	}
	w.track = t
	return t
}

// oldWorkersGone reports whether every worker replaced by a reload during
// this replacement has exited. Off, it cannot be
// seen and counts as gone: preflight said so. Through the master CLI, a
// worker is gone once `show proc` no longer lists it as an old one; an
// answer that does not hold the worker the stats socket reaches now proves
// nothing (another HAProxy, or one restarting).
func (r *replacement) oldWorkersGone(ctx context.Context) bool {
	r.hmu.Lock()
	old := append([]oldWorker(nil), r.reload.oldWorkers...)
	current := r.reload.info.Pid
	r.hmu.Unlock()
	if len(old) == 0 {
		return true
	}
	switch t := r.track(ctx); t.mode {
	case trackMaster:
		p, err := r.a.master.Procs(ctx)
		if err != nil {
			return false
		}
		if cur, _ := p.Listed(current); !cur {
			return false
		}
		for _, w := range old {
			if _, listed := p.Listed(w.pid); listed {
				return false
			}
		}
		return true
	case trackLocal:
		for _, w := range old {
			if r.a.procfs.alive(w) {
				return false
			}
		}
	}
	return true
}

// procFS reads /proc (a test points it elsewhere).
type procFS string

// procStat is what the agent reads of /proc/<pid>/stat.
type procStat struct {
	state byte
	ppid  int
	start uint64 // clock ticks after boot
}

func (p procFS) stat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(string(p), strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %q: no command name", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 20", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %q: malformed", pid, s)
	}
	return procStat{state: f[0][0], ppid: ppid, start: start}, nil
}

// nsPids returns pid's pids in the pid namespaces it is in, from the agent's
// down to its own (the NSpid line of /proc/<pid>/status; "self" for the
// agent). Unlike /proc/<pid>/ns/pid, it is readable without the right to
// trace the process.
func (p procFS) nsPids(pid string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(string(p), pid, "status"))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return strings.Fields(v), nil
		}
	}
	return nil, fmt.Errorf("/proc/%s/status has no NSpid line (Linux 4.1 or later has one)", pid)
}

// notLocal says why worker, the pid `show info` reports, cannot be taken for
// a process in the agent's pid namespace, or "" when it can: owner, the
// process that serves the stats socket as the kernel names it here, is in
// the agent's pid namespace (so HAProxy reports its pids in it too), and
// worker is owner itself or its child.
func (p procFS) notLocal(owner, worker int) string {
	if owner == 0 {
		return "the process that serves haproxy.socket is not visible from the agent's pid namespace (HAProxy runs in a container)"
	}
	self, err := p.nsPids("self")
	if err != nil {
		return fmt.Sprintf("cannot read the agent's pid namespace: %v", err)
	}
	theirs, err := p.nsPids(strconv.Itoa(owner))
	if err != nil {
		return fmt.Sprintf("cannot read the pid namespace of process %d, which serves haproxy.socket: %v", owner, err)
	}
	// Only the agent's pid namespace and those nested in it are visible
	// here: one as deep as the agent's is the agent's.
	if len(theirs) != len(self) {
		return fmt.Sprintf("HAProxy (process %d here) runs in a pid namespace nested in the agent's (its pids %s), as in a container: the worker pid %d that `show info` reports is another process here", owner, strings.Join(theirs, " "), worker)
	}
	if worker == owner {
		return ""
	}
	st, err := p.stat(worker)
	if err != nil {
		return fmt.Sprintf("the worker pid %d that `show info` reports is no process here: %v", worker, err)
	}
	if st.ppid != owner {
		return fmt.Sprintf("process %d here, the worker pid `show info` reports, is not a child of HAProxy's process %d that serves haproxy.socket", worker, owner)
	}
	return ""
}

// worker returns what identifies pid here (trackLocal): its start time.
func (p procFS) worker(pid int) oldWorker {
	st, err := p.stat(pid)
	if err != nil {
		return oldWorker{pid: pid}
	}
	return oldWorker{pid: pid, start: st.start}
}

// alive reports whether the old worker w still runs: a process with its pid
// and its start time that is not a zombie. One with another start time took
// the pid over after it exited. A worker whose start time could not be read
// while it was current had exited by then.
func (p procFS) alive(w oldWorker) bool {
	st, err := p.stat(w.pid)
	if err != nil {
		return false
	}
	return w.start != 0 && st.state != 'Z' && st.start == w.start
}
