package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// assertRolledBack checks the slot serves from its old container at its
// original weight and nothing else is left.
func assertRolledBack(t *testing.T, w *world, oldID string) {
	t.Helper()
	c := w.byName("app-1")
	if c == nil || c.ID != oldID || !c.Running {
		t.Fatalf("app-1 is %+v, want the old container %s running", c, oldID)
	}
	if w.servers["app/srv-app-1"].stat.Weight != 7 {
		t.Fatalf("weight %d, want 7", w.servers["app/srv-app-1"].stat.Weight)
	}
}

func TestAnImageRemovedBetweenPullAndCreateIsRolledBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	oldID := w.byName("app-1").ID
	w.fail["Clone"] = docker.ErrImageNotFound
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, docker.ErrImageNotFound) {
		t.Fatalf("got %v", err)
	}
	assertRolledBack(t, w, oldID)
	if len(w.ctrs) != 1 {
		t.Fatalf("%d containers", len(w.ctrs))
	}
}

func TestALeftoverPreviousContainerIsANameConflictAndRolledBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	oldID := w.byName("app-1").ID
	w.ctrs["stray"] = &docker.Container{ID: "stray", Name: "app-1" + prevSuffix}
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, docker.ErrNameConflict) {
		t.Fatalf("got %v", err)
	}
	assertRolledBack(t, w, oldID)
}

func TestHAProxyFailingDuringTheGateIsRolledBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.grace = 50 * time.Millisecond // the rollback retries the timeouts until health.timeout + grace
	oldID := w.byName("app-1").ID
	w.fail["LeaveMaint"] = runtime.ErrTimeout
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("got %v", err)
	}
	// The rollback's own gate fails the same way: the rollback is reported
	// incomplete, the journal is kept for a later recovery, and the weight
	// still goes back (a DOWN server takes no traffic whatever its weight).
	if !errors.Is(err, ErrRollback) {
		t.Fatalf("got %v, want ErrRollback too", err)
	}
	if w.servers["app/srv-app-1"].stat.Weight != 7 || w.byName("app-1").ID != oldID {
		t.Fatal("not back on the old container at weight 7")
	}
	if e, _ := (Journal{dir: a.cfg.StateDir}).Read(); e == nil {
		t.Fatal("an incomplete rollback must keep the journal")
	}
	delete(w.fail, "LeaveMaint") // HAProxy answers again
	if did, err := a.Recover(context.Background()); err != nil || did == "" {
		t.Fatalf("recover: %q, %v", did, err)
	}
	assertRolledBack(t, w, oldID)
}
