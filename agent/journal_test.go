package agent

import (
	"context"
	"errors"
	"testing"
)

// A journal write that fails as the gate passes: the replacement must not
// report (nor act on) a proven new container that the journal does not hold
// as proven, since the next recovery would follow the journal.
func TestAFailedWriteOfProvenReportsWhatTheJournalHolds(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	oldID := w.byName("app-1").ID
	diskFull := errors.New("no space left on device")
	failed := false
	a.journalFault = func(e Entry) error {
		if e.Proven && !failed {
			failed = true
			return diskFull
		}
		return nil
	}
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, diskFull) {
		t.Fatalf("got %v, want the journal's error", err)
	}
	e, jerr := (Journal{dir: a.cfg.StateDir}).Read()
	if jerr != nil {
		t.Fatal(jerr)
	}
	got := rep.Slots[0]
	if e != nil && !e.Proven && got.Result != ResultRolledBack {
		t.Fatalf("the journal holds an unproven replacement (phase %s) but the report says %s: %s", e.Phase, got.Result, got.Err)
	}
	if got.Result != ResultRolledBack || e != nil {
		t.Fatalf("result %s (%s), journal %+v: want rolled back, journal cleared", got.Result, got.Err, e)
	}
	assertRolledBack(t, w, oldID)
	if len(w.ctrs) != 1 {
		t.Fatalf("%d containers, want the old one only", len(w.ctrs))
	}
}

// A container that exists is removed by the rollback even when the journal
// could not be told its ID.
func TestAFailedWriteOfTheNewIDStillRemovesTheNewContainer(t *testing.T) {
	for _, strategy := range []string{StrategyStopFirst, StrategyStartFirst} {
		t.Run(strategy, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addSlot("app-1", 7)
			if strategy == StrategyStartFirst {
				w.startFirst()
			}
			a := newTestAgent(t, w, slot)
			oldID := w.byName("app-1").ID
			diskFull := errors.New("no space left on device")
			failed := false
			a.journalFault = func(e Entry) error {
				if e.NewID != "" && !failed {
					failed = true
					return diskFull
				}
				return nil
			}
			rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
			if !errors.Is(err, diskFull) || rep.Slots[0].Result != ResultRolledBack {
				t.Fatalf("got %v, %s: want the journal's error, rolled back", err, rep.Slots[0].Result)
			}
			assertRolledBack(t, w, oldID)
			if len(w.ctrs) != 1 {
				t.Fatalf("%d containers, want the old one only", len(w.ctrs))
			}
		})
	}
}
