package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/runtime"
)

// TestAWorkerPidFromAContainerDoesNotHoldTheDrain: HAProxy in a container
// reports its worker's pid in its own pid namespace. Here that pid is 1, the
// host's init, which never exits: taken for the old worker after a reload,
// it would hold the drain until drain.timeout. The agent cannot see which
// process serves the socket, so it must not follow that pid at all, and it
// must say at the start of the redeploy that reload tracking is off.
func TestAWorkerPidFromAContainerDoesNotHoldTheDrain(t *testing.T) {
	w := newWorld(t)
	w.sessions = 20
	w.owner = -1 // SO_PEERCRED names no process here
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	var warned string
	events := func(e Event) {
		if e.Phase == PhasePreflight && strings.Contains(e.Detail, "reload tracking is off") {
			warned = e.Detail
		}
	}
	go func() {
		waitCall(w, "SetState app/srv-app-1 maint")
		w.reload(1 << 22)
	}()
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, events)
	if err != nil {
		t.Fatalf("the drain waited for pid 1 (init here, not HAProxy's old worker): %v", err)
	}
	if rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("result %s", rep.Slots[0].Result)
	}
	if !strings.Contains(warned, "haproxy.master_socket") {
		t.Fatalf("no preflight warning that says what to configure: %q", warned)
	}
}

// fakeProc is a /proc under t.TempDir, for a.procfs.
type fakeProc string

// newFakeProc makes a /proc whose "self" is in the pid namespaces of nspids.
func newFakeProc(t *testing.T, nspids ...int) fakeProc {
	t.Helper()
	p := fakeProc(t.TempDir())
	p.write(t, "self", "status", "Name:\tharoll\nNSpid:\t"+joinInts(nspids)+"\n")
	return p
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, "\t")
}

func (p fakeProc) write(t *testing.T, pid, name, content string) {
	t.Helper()
	dir := filepath.Join(string(p), pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Written whole then renamed, as the kernel shows a file: never half.
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// process adds a process: its state, parent, start time (clock ticks after
// boot) and its pids from the agent's pid namespace down to its own.
func (p fakeProc) process(t *testing.T, pid int, state byte, ppid int, start uint64, nspids ...int) {
	t.Helper()
	if len(nspids) == 0 {
		nspids = []int{pid}
	}
	p.write(t, strconv.Itoa(pid), "stat", fmt.Sprintf("%d (hap (roxy)) %c %d 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, state, ppid, start))
	p.write(t, strconv.Itoa(pid), "status", "Name:\thaproxy\nNSpid:\t"+joinInts(nspids)+"\n")
}

func TestWhetherAWorkerPidIsAProcessHereIsProvenOrRefusedWithTheReason(t *testing.T) {
	p := newFakeProc(t, 500)
	p.process(t, 10, 'S', 1, 100)        // HAProxy's master, in the agent's namespace
	p.process(t, 11, 'S', 10, 200)       // its worker
	p.process(t, 12, 'S', 1, 300)        // an unrelated process
	p.process(t, 20, 'S', 1, 400, 20, 1) // a master in a container: pid 1 there
	p.process(t, 2, 'S', 0, 5)           // pid 2 here, the worker's pid in that container
	for _, tc := range []struct {
		name          string
		owner, worker int
		want          string // "" or a part of the reason
	}{
		{"the worker of a master here", 10, 11, ""},
		{"a worker serving its own socket (no master-worker)", 11, 11, ""},
		{"the socket's process is not visible here", 0, 11, "not visible from the agent's pid namespace"},
		{"HAProxy in a container", 20, 2, "nested in the agent's"},
		{"a pid that is no process here", 10, 99, "no process here"},
		{"a process here that is not the master's child", 10, 12, "not a child"},
		{"a socket's process that is gone", 98, 11, "cannot read the pid namespace of process 98"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := procFS(p).notLocal(tc.owner, tc.worker)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("notLocal(%d, %d) = %q, want %q", tc.owner, tc.worker, got, tc.want)
			}
		})
	}
}

func TestAnOldWorkerIsAliveOnlyWithItsPidAndItsStartTime(t *testing.T) {
	p := newFakeProc(t, 500)
	p.process(t, 11, 'S', 10, 200)
	w := procFS(p).worker(11)
	if w != (oldWorker{pid: 11, start: 200}) {
		t.Fatalf("worker(11) = %+v", w)
	}
	if !procFS(p).alive(w) {
		t.Fatal("the worker itself is not alive")
	}
	p.process(t, 11, 'Z', 10, 200)
	if procFS(p).alive(w) {
		t.Fatal("a zombie counts as alive: it serves no session")
	}
	p.process(t, 11, 'S', 1, 900)
	if procFS(p).alive(w) {
		t.Fatal("another process that took the pid over counts as the old worker")
	}
	if procFS(p).alive(oldWorker{pid: 11}) || procFS(p).alive(oldWorker{pid: 77, start: 1}) {
		t.Fatal("a worker never seen, or a pid without a process, counts as alive")
	}
}

// TestARecycledPidDoesNotHoldTheDrainButTheOldWorkerDoes: HAProxy in the
// agent's pid namespace, proven by the socket's owner. The drain waits for
// the old worker; once its pid is taken by another process (another start
// time), the old worker is gone and the drain ends.
func TestARecycledPidDoesNotHoldTheDrainButTheOldWorkerDoes(t *testing.T) {
	p := newFakeProc(t, 500)
	p.process(t, 10, 'S', 1, 100)
	p.process(t, 11, 'S', 10, 200)
	w := newWorld(t)
	w.sessions = 5
	w.owner, w.pid = 10, 10 // show info: worker 11 of master 10
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.procfs = procFS(p)
	var recycled time.Time
	var mu sync.Mutex
	go func() {
		waitCall(w, "SetState app/srv-app-1 maint")
		p.process(t, 12, 'S', 10, 300)
		w.reload(12)
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		recycled = time.Now()
		mu.Unlock()
		p.process(t, 11, 'S', 1, 900) // worker 11 exited, and its pid was reused
	}()
	var drainEnd time.Time
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		if e.Phase == PhasePreflight && e.Detail != "" {
			t.Errorf("preflight warned: %s", e.Detail)
		}
		if e.Phase == PhaseDrain {
			drainEnd = e.Start.Add(e.Duration)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if recycled.IsZero() || drainEnd.Before(recycled) {
		t.Fatalf("the drain ended at %s, before the old worker was gone (%s)", drainEnd.Format(time.StampMilli), recycled.Format(time.StampMilli))
	}
}

// fakeMaster is HAProxy's master CLI: `show proc` lists what procs holds.
type fakeMaster struct {
	mu    sync.Mutex
	procs runtime.Procs
	err   error
}

func (m *fakeMaster) Procs(ctx context.Context) (runtime.Procs, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.procs, m.err
}

func (m *fakeMaster) set(p runtime.Procs) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.procs = p
}

// TestThroughTheMasterCLITheDrainWaitsUntilTheOldWorkerIsNoLongerListed:
// the pids are HAProxy's own (1 and 2 here are init and another process):
// only `show proc` says whether the old worker still runs.
func TestThroughTheMasterCLITheDrainWaitsUntilTheOldWorkerIsNoLongerListed(t *testing.T) {
	w := newWorld(t)
	w.sessions = 5
	w.owner = -1 // in a container
	w.pid = 1    // show info: worker 2
	m := &fakeMaster{procs: runtime.Procs{Master: 1, Workers: []runtime.Proc{{Pid: 2}}}}
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	WithMaster(m)(a)
	var gone time.Time
	var mu sync.Mutex
	go func() {
		waitCall(w, "SetState app/srv-app-1 maint")
		m.set(runtime.Procs{Master: 1, Workers: []runtime.Proc{{Pid: 3}}, Old: []runtime.Proc{{Pid: 2, Reloads: 1}}})
		w.reload(3)
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		gone = time.Now()
		mu.Unlock()
		m.set(runtime.Procs{Master: 1, Workers: []runtime.Proc{{Pid: 3}}})
	}()
	var drainEnd time.Time
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		if e.Phase == PhasePreflight && e.Detail != "" {
			t.Errorf("preflight warned: %s", e.Detail)
		}
		if e.Phase == PhaseDrain {
			drainEnd = e.Start.Add(e.Duration)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if gone.IsZero() || drainEnd.Before(gone) {
		t.Fatalf("the drain ended at %s, before the master stopped listing the old worker (%s)", drainEnd.Format(time.StampMilli), gone.Format(time.StampMilli))
	}
}

func TestAMasterSocketThatFailsOrBelongsToAnotherHAProxyIsRefusedInPreflight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		procs runtime.Procs
		err   error
		want  string
	}{
		{"it does not answer", runtime.Procs{}, runtime.ErrUnreachable, "haproxy.master_socket"},
		{"another HAProxy's", runtime.Procs{Master: 7, Workers: []runtime.Proc{{Pid: 8}}}, nil, "different HAProxy instances"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			a := newTestAgent(t, w, w.addSlot("app-1", 7))
			a.cfg.HAProxy.MasterSocket = "/run/haproxy/master.sock"
			WithMaster(&fakeMaster{procs: tc.procs, err: tc.err})(a)
			_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
			if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrPreflight saying %q", err, tc.want)
			}
			if calls := w.mutations(); len(calls) != 0 {
				t.Fatalf("changed %q", calls)
			}
		})
	}
}

// TestTheDefaultMasterSocketIsUsedOnlyWhenItIsThisHAProxys: Debian's
// haproxy.service has one at DefaultMasterSocket; on a host without it, or
// with another HAProxy's there, the agent goes on without it and says so
// when it cannot follow old workers otherwise.
func TestTheDefaultMasterSocketIsUsedOnlyWhenItIsThisHAProxys(t *testing.T) {
	w := newWorld(t)
	w.owner = -1
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	if a.cfg.HAProxy.MasterSocket != DefaultMasterSocket {
		t.Fatalf("default master socket %q", a.cfg.HAProxy.MasterSocket)
	}
	WithMaster(&fakeMaster{err: runtime.ErrUnreachable})(a)
	var warned string
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		if e.Phase == PhasePreflight {
			warned = e.Detail
		}
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warned, reloadTrackingOff) || !strings.Contains(warned, DefaultMasterSocket) {
		t.Fatalf("preflight said %q", warned)
	}
}
