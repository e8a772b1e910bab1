package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// wedgeByRemovingTheOld leaves slot app-1 wedged as a crash during the
// rollback of a replacement by app:broken (which never boots), followed by
// someone removing the old container (or Docker, for one created with --rm),
// leaves it: the next rollback cannot bring the old container back. It returns the agent, and
// the error of the first recovery.
func wedgeByRemovingTheOld(t *testing.T, w *world, slots ...SlotConfig) (*Agent, error) {
	t.Helper()
	a := newTestAgent(t, w, slots...)
	w.crashBefore = "Remove app-1"
	func() {
		defer func() {
			if r := recover(); r != errCrash {
				t.Fatalf("no crash before the rollback's Remove (recovered %v)", r)
			}
		}()
		_, _ = a.Redeploy(context.Background(), Request{Image: "app:broken", Slots: []string{"app-1"}}, nil)
	}()
	w.mu.Lock()
	old := w.byName("app-1" + prevSuffix)
	if old == nil {
		w.mu.Unlock()
		t.Fatalf("no old container under %s after the crash: %v", "app-1"+prevSuffix, w.calls)
	}
	delete(w.ctrs, old.ID)
	w.mu.Unlock()
	_, err := a.Recover(context.Background())
	if !errors.Is(err, ErrRollback) {
		t.Fatalf("recovery without the old container: %v, want ErrRollback", err)
	}
	return a, err
}

// assertServes checks that slot app-1 runs image alone behind its server, at
// weight, and that no journal is left.
func assertServes(t *testing.T, a *Agent, w *world, image string, weight, containers int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.byName("app-1")
	if c == nil || !c.Running || c.Image != image {
		t.Fatalf("app-1: %+v, want %s running", c, image)
	}
	if len(w.ctrs) != containers {
		t.Fatalf("%d containers, want %d: %v", len(w.ctrs), containers, w.calls)
	}
	st := w.servers["app/srv-app-1"]
	want := fmt.Sprintf("127.0.0.1:%d", c.Ports["8080/tcp"][0].HostPort)
	if st.stat.Weight != weight || st.stat.Addr != want || st.admin.State != "ready" {
		t.Fatalf("server at weight %d, %s, %s; want %d, %s, ready", st.stat.Weight, st.stat.Addr, st.admin.State, weight, want)
	}
	if e, err := (Journal{dir: a.cfg.StateDir}).Read(); err != nil || e != nil {
		t.Fatalf("journal left: %+v, %v", e, err)
	}
}

func TestARedeployOfAWorkingImageTakesOverASlotWhoseOldContainerIsGone(t *testing.T) {
	for _, startFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("start-first %v", startFirst), func(t *testing.T) {
			w := newWorld(t)
			slot := w.addSlot("app-1", 7)
			if startFirst {
				w.startFirst() // the take-over's clone gets a new address
			}
			a, _ := wedgeByRemovingTheOld(t, w, slot)
			// Every later recovery fails the same way: the slot is wedged
			// until someone acts.
			if _, err := a.Recover(context.Background()); !errors.Is(err, ErrRollback) {
				t.Fatalf("second recovery: %v, want ErrRollback", err)
			}
			rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-1"}, Origin: "test"}, nil)
			if err != nil {
				t.Fatalf("redeploy of a working image over the wedged slot: %v", err)
			}
			if len(rep.Slots) != 1 || rep.Slots[0].Result != ResultReplaced {
				t.Fatalf("report %+v", rep.Slots)
			}
			assertServes(t, a, w, "app:v2", 7, 1)
		})
	}
}

func TestATakeOverWhoseServerCannotBeQuiescedLeavesTheWedgedJournalAsItWas(t *testing.T) {
	w := newWorld(t)
	a, _ := wedgeByRemovingTheOld(t, w, w.addSlot("app-1", 7))
	before, _ := (Journal{dir: a.cfg.StateDir}).Read()
	w.failing("SetState", errors.New("permission denied"))
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err == nil || rep.Slots[0].Result != ResultFailed || !strings.Contains(err.Error(), "taking over the slot") {
		t.Fatalf("take-over while HAProxy refuses maintenance: %+v, %v", rep.Slots, err)
	}
	after, _ := (Journal{dir: a.cfg.StateDir}).Read()
	if after == nil || after.OldID != before.OldID || after.NewID != before.NewID || after.Image != "app:broken" || after.Weight != 7 {
		t.Fatalf("journal %+v, want the wedged one (%+v)", after, before)
	}
	if c := w.byName(before.NewID); c == nil {
		t.Fatal("the kept container was removed by a take-over that could not start")
	}
	w.failing("SetState", nil)
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	assertServes(t, a, w, "app:v2", 7, 1)
}

func TestARedeployOfAWorkingImageTakesOverASlotWhoseOldContainerNoLongerStarts(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	a := newTestAgent(t, w, slot)
	// The old image no longer comes up (a volume it needs is gone, say):
	// the rollback of a failed replacement cannot bring it back.
	w.broken["sha256:v1"] = true
	_, err := a.Redeploy(context.Background(), Request{Image: "app:broken"}, nil)
	if !errors.Is(err, ErrRollback) {
		t.Fatalf("redeploy of app:broken: %v, want ErrRollback", err)
	}
	if _, err := a.Recover(context.Background()); !errors.Is(err, ErrRollback) {
		t.Fatalf("recovery: %v, want ErrRollback", err)
	}
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("redeploy of a working image over the wedged slot: %+v, %v", rep.Slots, err)
	}
	assertServes(t, a, w, "app:v2", 7, 1)
}

func TestTheRollbackKeepsTheNewContainerWhenTheOldOneIsGone(t *testing.T) {
	w := newWorld(t)
	_, err := wedgeByRemovingTheOld(t, w, w.addSlot("app-1", 7))
	w.mu.Lock()
	defer w.mu.Unlock()
	kept := w.byName("app-1")
	if kept == nil || kept.Image != "app:broken" || kept.Running {
		t.Fatalf("app-1: %+v, want the new app:broken container kept, stopped", kept)
	}
	srv := w.servers["app/srv-app-1"]
	if srv.admin.State != "maint" {
		t.Fatalf("server %s, want maint", srv.admin.State)
	}
	for _, want := range []string{"app-1", "is gone", "kept", "haroll redeploy", "haroll recover --abandon"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestAFailedTakeOverLeavesTheSlotWedgedAsBeforeAndAWorkingOneThenSucceeds(t *testing.T) {
	w := newWorld(t)
	a, _ := wedgeByRemovingTheOld(t, w, w.addSlot("app-1", 7))
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:broken", Slots: []string{"app-1"}}, nil)
	if !errors.Is(err, ErrRollback) || rep.Slots[0].Result != ResultFailed {
		t.Fatalf("take-over by a broken image: %+v, %v; want a failed slot and ErrRollback", rep.Slots, err)
	}
	e, err := (Journal{dir: a.cfg.StateDir}).Read()
	if err != nil || e == nil || e.Failure == "" || !e.Maint || e.Weight != 7 {
		t.Fatalf("journal after the failed take-over: %+v, %v; want a wedged entry in maintenance at weight 7", e, err)
	}
	w.mu.Lock()
	tmpl, srv := w.byName(e.OldID), w.servers["app/srv-app-1"]
	if tmpl == nil || tmpl.Name != "app-1" || len(w.ctrs) != 1 || srv.admin.State != "maint" {
		w.mu.Unlock()
		t.Fatalf("template %+v, %d containers, server %s: want the template kept as app-1, alone, in maintenance", tmpl, len(w.ctrs), srv.admin.State)
	}
	w.mu.Unlock()
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatalf("take-over by a working image after a failed one: %v", err)
	}
	assertServes(t, a, w, "app:v2", 7, 1)
}

func TestAWedgedSlotBlocksOtherSlotsWithAnErrorThatSaysWhyAndTheWaysForward(t *testing.T) {
	w := newWorld(t)
	slots := threeSlots(t, w)
	a, _ := wedgeByRemovingTheOld(t, w, slots...)
	before := len(w.mutations())
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-2"}}, nil)
	if !errors.Is(err, ErrWedged) {
		t.Fatalf("redeploy of another slot: %v, want ErrWedged", err)
	}
	for _, want := range []string{"slot app-1", "app:broken", "is gone", "haroll redeploy --slot app-1", "haroll recover --abandon", "haroll recover --status"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The recovery ran again (and failed the same way); app-2 was not
	// touched.
	for _, c := range w.mutations()[before:] {
		if strings.Contains(c, "app-2") {
			t.Errorf("app-2 touched: %s", c)
		}
	}
	if e, _ := (Journal{dir: a.cfg.StateDir}).Read(); e == nil || e.Slot != "app-1" {
		t.Fatalf("journal %+v, want app-1's wedged entry kept", e)
	}
}

func TestATakeOverWithNothingToCloneIsRefusedAndChangesNothing(t *testing.T) {
	w := newWorld(t)
	a, _ := wedgeByRemovingTheOld(t, w, w.addSlot("app-1", 7))
	w.mu.Lock()
	for id := range w.ctrs {
		delete(w.ctrs, id) // the kept container too
	}
	w.mu.Unlock()
	_, _ = a.Recover(context.Background()) // the recovery settles what it can
	before := len(w.mutations())
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, ErrNoTemplate) || !errors.Is(err, ErrPreflight) {
		t.Fatalf("take-over with no container left: %v, want ErrPreflight and ErrNoTemplate", err)
	}
	for _, want := range []string{"recreate container app-1 by hand", "haroll recover --abandon"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, c := range w.mutations()[before:] {
		// Only the recovery's own retry may act (it keeps the server in
		// maintenance); the take-over touches nothing.
		if !strings.HasPrefix(c, "SetState app/srv-app-1 maint") && !strings.HasPrefix(c, "SetWeight app/srv-app-1 7") {
			t.Errorf("changed: %s", c)
		}
	}
}

// A redeploy of every slot takes the wedged one over first: the journal
// holds its only record, which the replacement of a slot before it in the
// config would overwrite (and lose to a crash or a rollback there).
func TestAWedgedSlotIsTakenOverBeforeTheSlotsBeforeItInTheConfig(t *testing.T) {
	w := newWorld(t)
	first := w.addSlot("app-0", 5)
	a, _ := wedgeByRemovingTheOld(t, w, first, w.addSlot("app-1", 7))
	w.crashBefore = "Clone app:v2 app-0"
	func() {
		defer func() {
			if r := recover(); r != errCrash {
				t.Fatalf("no crash before app-0's clone (recovered %v)", r)
			}
		}()
		_, _ = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	}()
	if _, err := a.Recover(context.Background()); err != nil {
		t.Fatalf("recovery of app-0's replacement: %v", err)
	}
	w.mu.Lock()
	app0 := w.byName("app-0")
	w.mu.Unlock()
	if app0 == nil || app0.Image != "app:v1" || !app0.Running {
		t.Fatalf("app-0: %+v, want app:v1 rolled back", app0)
	}
	assertServes(t, a, w, "app:v2", 7, 2)
}
