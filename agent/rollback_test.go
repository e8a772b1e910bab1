package agent

import (
	"context"
	"testing"
	"time"

	"github.com/haroll/haroll/runtime"
)

// stopGrace is how long the fake's old container runs after its stop signal,
// healthy, before it exits: an app with a shutdown grace.
const stopGrace = 300 * time.Millisecond

// assertRunsAfterItsGrace checks, once a container revived during its
// shutdown grace would have exited, that the old container serves again
// and that it was stopped to the end before it was started.
func assertRunsAfterItsGrace(t *testing.T, w *world, oldID string) {
	t.Helper()
	time.Sleep(stopGrace + 50*time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	assertRolledBack(t, w, oldID)
	calls := w.calls
	starts, stops := []int{}, []int{}
	for i, c := range calls {
		switch c {
		case "Start app-1":
			starts = append(starts, i)
		case "Stop app-1":
			stops = append(stops, i)
		}
	}
	if len(starts) == 0 || len(stops) < 2 || stops[len(stops)-1] > starts[len(starts)-1] {
		t.Fatalf("calls %q: want the cut-off stop finished (a second Stop) before the old container is started", calls)
	}
}

func TestARollbackFinishesAStopCutShortBeforeStartingTheOldContainerAgain(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7) // fixed host port: stop-first
	a := newTestAgent(t, w, slot)
	oldID := w.byName("app-1").ID
	w.stopGrace = stopGrace
	// SIGTERM to the agent (or docker.timeout) right after Docker sent the
	// old container its stop signal.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.onSignal = cancel
	rep, err := a.Redeploy(ctx, Request{Image: "app:v2"}, nil)
	if err == nil || len(rep.Slots) != 1 || rep.Slots[0].Result != ResultRolledBack {
		t.Fatalf("got %+v, %v: want the slot rolled back", rep.Slots, err)
	}
	assertRunsAfterItsGrace(t, w, oldID)
}

func TestARecoveryFinishesAStopCutShortBeforeStartingTheOldContainerAgain(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	a := newTestAgent(t, w, slot)
	oldID := w.byName("app-1").ID
	w.stopGrace = stopGrace
	// SIGKILL right after the stop signal, and a quick restart.
	w.onSignal = func() { panic(errCrash) }
	func() {
		defer func() {
			if r := recover(); r != errCrash {
				t.Fatalf("no crash at the stop signal (recovered %v)", r)
			}
		}()
		_, _ = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	}()
	b := newTestAgent(t, w, slot)
	b.cfg.StateDir = a.cfg.StateDir
	if _, err := b.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertRunsAfterItsGrace(t, w, oldID)
	if e, err := (Journal{dir: b.cfg.StateDir}).Read(); err != nil || e != nil {
		t.Fatalf("journal left: %+v, %v", e, err)
	}
}

func TestARetriedReviveNeverStopsTheOldContainerItStartedAgain(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	a := newTestAgent(t, w, slot)
	a.cfg.Health.Timeout = 300 * time.Millisecond
	oldID := w.byName("app-1").ID
	w.stopGrace = stopGrace
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.onSignal = cancel
	// Once the revived old container's server leaves maintenance, HAProxy
	// stops answering for longer than the gate waits: the revive is retried
	// while HAProxy may already send the old container requests.
	w.afterCall = func(call string) {
		if call == "LeaveMaint app/srv-app-1 ready" {
			w.afterCall = nil
			w.haproxyDown = runtime.ErrUnreachable
			time.AfterFunc(600*time.Millisecond, func() { w.setDown(&w.haproxyDown, nil) })
		}
	}
	if _, err := a.Redeploy(ctx, Request{Image: "app:v2"}, nil); err == nil {
		t.Fatal("the redeploy succeeded")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	assertRolledBack(t, w, oldID)
	n := 0
	for _, c := range w.calls {
		if c == "Stop app-1" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("calls %q: want 2 stops of the old container (the one cut short, the one that finishes it), got %d", w.calls, n)
	}
}
