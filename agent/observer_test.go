package agent

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	events []Event
	slots  []SlotReport
}

func (r *recorder) Phase(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) Slot(s SlotReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slots = append(r.slots, s)
}

func (r *recorder) phases(slot string) []Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Phase
	for _, e := range r.events {
		if e.Slot == slot {
			out = append(out, e.Phase)
		}
	}
	return out
}

func (r *recorder) results() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, s := range r.slots {
		out = append(out, s.Result)
	}
	return out
}

func observedAgent(t *testing.T, w *world, slots ...SlotConfig) (*Agent, *recorder) {
	t.Helper()
	a := newTestAgent(t, w, slots...)
	rec := &recorder{}
	WithObserver(rec)(a)
	return a, rec
}

func TestTheObserverSeesEveryPhaseAndEverySlotOutcome(t *testing.T) {
	w := newWorld(t)
	a, rec := observedAgent(t, w, threeSlots(t, w)...)
	var caller []Event
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) { caller = append(caller, e) })
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.events) != len(caller) {
		t.Errorf("observer saw %d events, the caller %d", len(rec.events), len(caller))
	}
	if got := rec.results(); !slices.Equal(got, []Result{ResultReplaced, ResultReplaced, ResultReplaced}) {
		t.Errorf("slot results %v, want three replaced", got)
	}
	if rec.slots[0].Slot != rep.Slots[0].Slot || rec.slots[2].Total != rep.Slots[2].Total {
		t.Errorf("observer's reports %+v differ from the Report %+v", rec.slots, rep.Slots)
	}
	if !slices.Contains(rec.phases("app-2"), PhaseGate) {
		t.Errorf("app-2 phases %v: no gate", rec.phases("app-2"))
	}
}

func TestTheObserverSeesARolledBackSlotAndTheSlotsNotRun(t *testing.T) {
	w := newWorld(t)
	a, rec := observedAgent(t, w, threeSlots(t, w)...)
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:broken"}, nil); err == nil {
		t.Fatal("a broken image was replaced")
	}
	if got := rec.results(); !slices.Equal(got, []Result{ResultRolledBack, ResultNotRun, ResultNotRun}) {
		t.Errorf("slot results %v", got)
	}
	if !slices.Contains(rec.phases("app-1"), PhaseRollback) {
		t.Errorf("app-1 phases %v: no rollback", rec.phases("app-1"))
	}
	for _, e := range rec.events {
		if e.Phase == PhaseBoot && !errors.Is(e.Cause, ErrNotHealthy) {
			t.Errorf("boot event: Cause %v, want ErrNotHealthy", e.Cause)
		}
	}
}

func TestADrainTimeoutIsMarkedOnTheDrainEvent(t *testing.T) {
	for _, onTimeout := range []string{OnTimeoutFail, OnTimeoutShutdown} {
		t.Run(onTimeout, func(t *testing.T) {
			w := newWorld(t)
			w.sessions = 1 << 30
			a, rec := observedAgent(t, w, w.addSlot("app-1", 7))
			a.cfg.Drain.Timeout = 50 * time.Millisecond
			a.cfg.Drain.OnTimeout = onTimeout
			_, _ = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
			var drains []Event
			for _, e := range rec.events {
				if e.Phase == PhaseDrain {
					drains = append(drains, e)
				}
			}
			if len(drains) != 1 || !drains[0].DrainTimedOut {
				t.Fatalf("drain events %+v, want one marked DrainTimedOut", drains)
			}
			if failed := errors.Is(drains[0].Cause, ErrDrainTimeout); failed != (onTimeout == OnTimeoutFail) {
				t.Errorf("Cause %v", drains[0].Cause)
			}
		})
	}
}

func TestAnOrdinaryDrainIsNotMarkedTimedOut(t *testing.T) {
	w := newWorld(t)
	w.sessions = 2
	a, rec := observedAgent(t, w, w.addSlot("app-1", 7))
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range rec.events {
		if e.DrainTimedOut || e.Cause != nil {
			t.Errorf("event %+v: marked timed out or failed", e)
		}
	}
}

func TestTheObserverSeesARecoveryOutsideARedeploy(t *testing.T) {
	w := newWorld(t)
	a, rec := observedAgent(t, w, w.addSlot("app-1", 7))
	redeployUntilCrash(t, a, w, "Start")
	w.crashBefore = ""
	rec.events = nil
	did, err := a.Recover(context.Background())
	if err != nil || did == "" {
		t.Fatalf("recover: %q, %v", did, err)
	}
	if got := rec.phases("app-1"); !slices.Contains(got, PhaseRollback) {
		t.Errorf("app-1 phases during recovery %v: no rollback", got)
	}
	if got := rec.phases("(journal)"); !slices.Equal(got, []Phase{PhaseRecover}) {
		t.Errorf("journal phases %v, want one recover", got)
	}
}
