package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// after runs fn once the replacement has reached phase.
func after(w *world, phase Phase, fn func()) func(Event) {
	done := false
	return func(e Event) {
		if e.Phase == phase && !done {
			done = true
			fn()
		}
	}
}

// waitCall waits until w has seen call: an outage timed from the drain's
// start, not from a fixed delay a loaded machine may outrun.
func waitCall(w *world, call string) {
	for countCalls(w, call) == 0 {
		time.Sleep(time.Millisecond)
	}
}

func countCalls(w *world, call string) int {
	n := 0
	for _, c := range w.mutations() {
		if c == call {
			n++
		}
	}
	return n
}

func TestAnHAProxyRestartDuringTheDrainIsWaitedOutAndTheDrainReapplied(t *testing.T) {
	w := newWorld(t)
	w.sessions = 1 << 20   // only the restart ends them
	w.pid = deadPid(t) - 1 // a restart ends the old process
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	go func() {
		waitCall(w, "SetWeight app/srv-app-1 0")
		w.setDown(&w.haproxyDown, runtime.ErrUnreachable) // the socket is gone
		time.Sleep(150 * time.Millisecond)
		w.restartHAProxy(map[string]int{"srv-app-1": 7})
	}()
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	if n := countCalls(w, "SetWeight app/srv-app-1 0"); n != 2 {
		t.Fatalf("weight 0 set %d times, want 2 (again after the restart): %q", n, w.mutations())
	}
	if s := w.servers["app/srv-app-1"].stat; s.Weight != 7 || w.byName("app-1").Image != "app:v2" {
		t.Fatalf("after: weight %d, image %s", s.Weight, w.byName("app-1").Image)
	}
}

func TestHAProxyGoneLongerThanTheDrainTimeoutRollsBackOnceItAnswers(t *testing.T) {
	w := newWorld(t)
	w.sessions = 1 << 20
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Drain.Timeout = 200 * time.Millisecond
	oldID := w.byName("app-1").ID
	go func() {
		waitCall(w, "SetWeight app/srv-app-1 0")
		w.setDown(&w.haproxyDown, runtime.ErrTimeout) // a hanging socket
		time.Sleep(500 * time.Millisecond)
		w.setDown(&w.haproxyDown, nil) // the same process answers again
	}()
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, runtime.ErrTimeout) || !strings.Contains(err.Error(), "haproxy has not answered for") || errors.Is(err, ErrRollback) {
		t.Fatalf("got %v: want the outage named, and a complete rollback", err)
	}
	if rep.Slots[0].Result != ResultRolledBack {
		t.Fatalf("result %s", rep.Slots[0].Result)
	}
	assertRolledBack(t, w, oldID)
	if e, _ := (Journal{dir: a.cfg.StateDir}).Read(); e != nil {
		t.Fatalf("journal kept after a complete rollback: %+v", e)
	}
}

func TestADockerDaemonGoneAtTheStopRollsBackOnceItAnswers(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	oldID := w.byName("app-1").ID
	events := after(w, PhaseDrain, func() {
		w.setDown(&w.dockerDown, docker.ErrUnreachable)
		// Back 200 ms after the stop was refused, not after the drain: on a
		// busy machine the stop may come more than 200 ms after it.
		go func() {
			for w.refusedCalls() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			w.setDown(&w.dockerDown, nil)
		}()
	})
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, events)
	if !errors.Is(err, docker.ErrUnreachable) || errors.Is(err, ErrRollback) {
		t.Fatalf("got %v: want the daemon named, and a complete rollback", err)
	}
	assertRolledBack(t, w, oldID)
	if len(w.ctrs) != 1 {
		t.Fatalf("%d containers", len(w.ctrs))
	}
}

// A Docker daemon restarted with live-restore while the new container boots:
// the container runs on, and the boot waits for the daemon (within
// health.timeout) instead of rolling a healthy replacement back.
func TestADockerDaemonRestartDuringTheBootIsWaitedOut(t *testing.T) {
	for _, mode := range []string{DockerHealthWait, DockerHealthWatch} {
		t.Run(mode, func(t *testing.T) {
			w := newWorld(t)
			a := newTestAgent(t, w, w.addSlot("app-1", 7))
			a.cfg.Health.Docker = mode
			events := after(w, PhaseStart, func() {
				w.setDown(&w.dockerDown, docker.ErrUnreachable)
				time.AfterFunc(200*time.Millisecond, func() { w.setDown(&w.dockerDown, nil) })
			})
			rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, events)
			if err != nil {
				t.Fatalf("redeploy: %v", err)
			}
			if rep.Slots[0].Result != ResultReplaced || w.byName("app-1").Image != "app:v2" {
				t.Fatalf("result %s, image %s: want replaced on app:v2", rep.Slots[0].Result, w.byName("app-1").Image)
			}
			if s := w.servers["app/srv-app-1"].stat; s.Weight != 7 {
				t.Fatalf("weight %d, want 7", s.Weight)
			}
		})
	}
}

// A daemon that stays away past health.timeout fails the boot like an
// unhealthy container, and the error names the daemon.
func TestADockerDaemonGoneForTheWholeBootFailsItWithinTheHealthTimeout(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Health.Timeout = 200 * time.Millisecond
	oldID := w.byName("app-1").ID
	events := after(w, PhaseStart, func() {
		w.setDown(&w.dockerDown, docker.ErrUnreachable)
		time.AfterFunc(400*time.Millisecond, func() { w.setDown(&w.dockerDown, nil) })
	})
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, events)
	if !errors.Is(err, ErrNotHealthy) || !errors.Is(err, docker.ErrUnreachable) || errors.Is(err, ErrRollback) {
		t.Fatalf("got %v: want not healthy within health.timeout, the daemon named, and a complete rollback", err)
	}
	assertRolledBack(t, w, oldID)
}

func TestAnOutageLongerThanTheRollbackKeepsTheJournalForRecovery(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.grace = 100 * time.Millisecond
	a.cfg.Health.Timeout = 300 * time.Millisecond
	a.cfg.Drain.Timeout = 300 * time.Millisecond
	oldID := w.byName("app-1").ID
	events := after(w, PhaseStart, func() { w.setDown(&w.haproxyDown, runtime.ErrUnreachable) })
	begin := time.Now()
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, events)
	if !errors.Is(err, runtime.ErrUnreachable) || !errors.Is(err, ErrRollback) {
		t.Fatalf("got %v: want an incomplete rollback naming HAProxy", err)
	}
	// Bounded: the health wait, then the rollback's health.timeout +
	// drain.timeout + grace.
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
	if e, _ := (Journal{dir: a.cfg.StateDir}).Read(); e == nil {
		t.Fatal("an incomplete rollback must keep the journal")
	}
	w.restartHAProxy(map[string]int{"srv-app-1": 7})
	if did, err := a.Recover(context.Background()); err != nil || did == "" {
		t.Fatalf("recover: %q, %v", did, err)
	}
	assertRolledBack(t, w, oldID)
	if len(w.ctrs) != 1 {
		t.Fatalf("%d containers", len(w.ctrs))
	}
}

func TestARestoreThatFailsAfterTheGateIsFinishedForwardNotRolledBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	events := after(w, PhaseGate, func() { w.failing("SetWeight", runtime.ErrCommand) })
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, events)
	if !errors.Is(err, runtime.ErrCommand) || !strings.Contains(err.Error(), "haroll recover") {
		t.Fatalf("got %v", err)
	}
	if rep.Slots[0].Result != ResultFailed {
		t.Fatalf("result %s", rep.Slots[0].Result)
	}
	if w.byName("app-1").Image != "app:v2" || !w.byName("app-1").Running {
		t.Fatalf("the proven new container was not kept: %+v", w.byName("app-1"))
	}
	w.failing("SetWeight", nil)
	if did, err := a.Recover(context.Background()); err != nil || !strings.Contains(did, "finished") {
		t.Fatalf("recover: %q, %v", did, err)
	}
	if s := w.servers["app/srv-app-1"].stat; s.Weight != 7 || len(w.ctrs) != 1 {
		t.Fatalf("after recover: weight %d, %d containers", s.Weight, len(w.ctrs))
	}
}
