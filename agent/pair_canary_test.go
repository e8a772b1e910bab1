package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// canaryOfPair runs a 30% canary of app:v2 on pair slot (weight 7: a share
// of 3) and checks that both sides serve: the new one at the share, the old
// one at its whole weight, its container kept.
func canaryOfPair(t *testing.T, a *Agent, w *world, slot SlotConfig) {
	t.Helper()
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", CanaryPercent: 30}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v, %v", rep.Slots, err)
	}
	checkBothSidesServe(t, a, w, slot)
}

// checkBothSidesServe fails unless pair slot runs a canary of app:v2 on its
// alt side at 3 beside app:v1 on its primary side at 7, as the canary
// record, the status and the counters say.
func checkBothSidesServe(t *testing.T, a *Agent, w *world, slot SlotConfig) {
	t.Helper()
	if got := w.liveSides(slot); !slices.Equal(got, []string{slot.Server, slot.Alt.Server}) {
		t.Fatalf("live sides %v, want both", got)
	}
	w.mu.Lock()
	for name, want := range map[string]struct {
		image  string
		weight int
	}{slot.Alt.Server: {"app:v2", 3}, slot.Server: {"app:v1", 7}} {
		srv := w.servers["app/"+name]
		c := w.containerAt(srv.stat.Addr)
		if c == nil || c.Image != want.image || !c.Running || srv.stat.Weight != want.weight {
			w.mu.Unlock()
			t.Fatalf("%s at weight %d serves %+v, want %s at %d", name, srv.stat.Weight, c, want.image, want.weight)
		}
	}
	w.mu.Unlock()
	all, err := a.canaries()
	if c := all[slot.Name]; err != nil || c.Surge == nil || c.Weight != 3 || c.FullWeight != 7 || c.Surge.Pair.Idle != slot.Alt.Server {
		t.Fatalf("canary record %+v, %v", c, err)
	}
	st, err := a.Status(context.Background())
	if err != nil || st[0].LiveServer != slot.Alt.Server || st[0].CanaryBeside != slot.Server || !st[0].Canary || st[0].Weight != 3 || st[0].FullWeight != 7 || st[0].Image != "app:v2" {
		t.Fatalf("status %+v, %v", st, err)
	}
	cs, err := a.Counters(context.Background())
	if err != nil || !cs[0].Canary || cs[0].Weight != 3 || cs[0].Err != "" {
		t.Fatalf("counters %+v, %v: want the new side's", cs, err)
	}
	for _, kind := range []string{surgeJournal, retireJournal} {
		if e, _ := a.pairJournal(kind, slot.Name).Read(); e != nil {
			t.Fatalf("%s journal left: %+v", kind, e)
		}
	}
}

func checkNoCanary(t *testing.T, a *Agent) {
	t.Helper()
	if all, err := a.canaries(); err != nil || len(all) != 0 {
		t.Fatalf("canary records %+v, %v: want none", all, err)
	}
}

func TestACanaryOfAPairRunsBesideTheOldSideUntilPromoteRetiresIt(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	lowest := w.watchCapacity()
	start := lowest()
	canaryOfPair(t, a, w, slot)
	for _, c := range w.mutations() {
		if strings.Contains(c, "app/"+slot.Server+" ") {
			t.Fatalf("the old side was touched by the canary: %s", c)
		}
	}
	// The same image again is skipped; another one is refused with nothing changed.
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err != nil || rep.Slots[0].Result != ResultSkipped {
		t.Fatalf("%+v, %v", rep.Slots, err)
	}
	w.images["app:v3"] = "sha256:v3"
	before := len(w.mutations())
	_, err = a.Redeploy(context.Background(), Request{Image: "app:v3"}, nil)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "end the canary first") {
		t.Fatalf("want a refusal, got %v", err)
	}
	if m := w.mutations()[before:]; len(m) != 0 {
		t.Fatalf("a refused redeploy changed %v", m)
	}
	done, err := a.Promote(context.Background(), nil, "test", nil)
	if err != nil || len(done) != 1 || done[0].Weight != 7 {
		t.Fatalf("promote %+v, %v", done, err)
	}
	checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
	checkNoCanary(t, a)
	if low := lowest(); low < start {
		t.Fatalf("capacity fell to %d, from %d", low, start)
	}
	// Promoted: the old side was drained only after the new one had its whole weight.
	calls := w.mutations()
	given := slices.Index(calls, "SetWeight app/"+slot.Alt.Server+" 7")
	drained := slices.Index(calls, "SetWeight app/"+slot.Server+" 0")
	if given < 0 || drained < given {
		t.Fatalf("whole weight at %d, old side drained at %d: %v", given, drained, calls)
	}
	st, err := a.Status(context.Background())
	if err != nil || st[0].LiveServer != slot.Alt.Server || st[0].CanaryBeside != "" || st[0].Canary {
		t.Fatalf("status %+v, %v", st, err)
	}
	hist, err := a.History(HistoryQuery{Slot: slot.Name})
	if err != nil || len(hist) != 2 || hist[1].Strategy != "blue-green canary srv-app-1b beside srv-app-1" {
		t.Fatalf("history %+v, %v", hist, err)
	}
}

func TestRedeployingTheOldImageUndoesAPairsCanaryWithoutTouchingTheOldSide(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	lowest := w.watchCapacity()
	start := lowest()
	canaryOfPair(t, a, w, slot)
	before := len(w.mutations())
	// What a fleet rollout's canary rollback asks for.
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v1"}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v, %v", rep.Slots, err)
	}
	checkPairServes(t, w, slot, slot.Server, "app:v1", 7)
	checkNoCanary(t, a)
	calls := w.mutations()[before:]
	for _, c := range calls {
		if strings.Contains(c, "app/"+slot.Server+" ") {
			t.Fatalf("the old side was touched by the undo: %s", c)
		}
	}
	// Persistence-safe: weight 0 first, maintenance after.
	zero := slices.Index(calls, "SetWeight app/"+slot.Alt.Server+" 0")
	maint := slices.Index(calls, "SetState app/"+slot.Alt.Server+" maint")
	if zero < 0 || maint < zero {
		t.Fatalf("weight 0 at %d, maintenance at %d: %v", zero, maint, calls)
	}
	if low := lowest(); low < start {
		t.Fatalf("capacity fell to %d, from %d", low, start)
	}
	hist, err := a.History(HistoryQuery{Slot: slot.Name})
	if err != nil || len(hist) != 2 || hist[0].Strategy != "blue-green undo canary srv-app-1b->srv-app-1" || hist[0].ImageAfter != "app:v1" {
		t.Fatalf("history %+v, %v", hist, err)
	}
	// The next redeploy surges onto the alt side again.
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
}

// crashAt runs fn until the fake world panics before the mutating call
// point, as a killed agent stops there.
func crashAt(t *testing.T, w *world, point string, fn func()) {
	t.Helper()
	w.crashBefore = point
	defer func() {
		if r := recover(); r != errCrash {
			t.Fatalf("no crash at %q (recovered %v)", point, r)
		}
	}()
	fn()
}

func TestACrashAtEachStepOfAPairsCanaryIsFinishedOrUndone(t *testing.T) {
	canary := func(a *Agent) func() {
		return func() { _, _ = a.Redeploy(context.Background(), Request{Image: "app:v2", CanaryPercent: 30}, nil) }
	}
	undo := func(a *Agent) func() {
		return func() { _, _ = a.Redeploy(context.Background(), Request{Image: "app:v1"}, nil) }
	}
	promote := func(a *Agent) func() {
		return func() { _, _ = a.Promote(context.Background(), nil, "test", nil) }
	}
	const (
		oldSide = iota // app:v1 on the primary side only, no canary
		both           // the canary beside the old side
		newSide        // app:v2 on the alt side only, no canary
	)
	for _, tc := range []struct {
		name   string
		setup  bool // a canary runs before the crash
		run    func(*Agent) func()
		crash  string
		want   int
		action string // what the recovery is expected to have done ("" none)
	}{
		{"canary: booted, before the gate", false, canary, "LeaveMaint", oldSide, "rolled back"},
		{"canary: gate passed, before its share", false, canary, "SetWeight app/srv-app-1b 3", both, "canary surge"},
		{"undo: journaled, before the new side's weight 0", true, undo, "SetWeight app/srv-app-1b 0", oldSide, "rolled back"},
		{"undo: draining, before maintenance", true, undo, "SetState app/srv-app-1b maint", oldSide, "rolled back"},
		{"undo: drained, before the new container stops", true, undo, "Stop", oldSide, "rolled back"},
		{"undo: new container gone, before the old one's name", true, undo, "Rename", oldSide, "rolled back"},
		{"promote: before the whole weight", true, promote, "SetWeight app/srv-app-1b 7", both, ""},
		{"promote: whole weight, before the old side drains", true, promote, "SetWeight app/srv-app-1 0", newSide, "retirement"},
		{"promote: old side drained, before maintenance", true, promote, "SetState app/srv-app-1 maint", newSide, "retirement"},
		{"promote: old side idle, before its container goes", true, promote, "Stop", newSide, "retirement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addPair("app-1", 7)
			a := pairAgent(t, w, slot)
			if tc.setup {
				canaryOfPair(t, a, w, slot)
			}
			crashAt(t, w, tc.crash, tc.run(a))
			b := pairAgent(t, w, slot)
			b.cfg.StateDir = a.cfg.StateDir
			lowest := w.watchCapacity()
			did, err := b.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(did, tc.action) || (tc.action == "") != (did == "") {
				t.Fatalf("recovery did %q, want %q", did, tc.action)
			}
			if low := lowest(); low < 7 {
				t.Errorf("capacity fell to %d during the recovery, want at least 7", low)
			}
			switch tc.want {
			case oldSide:
				checkPairServes(t, w, slot, slot.Server, "app:v1", 7)
				checkNoCanary(t, b)
			case both:
				checkBothSidesServe(t, b, w, slot)
				// Still open to either end.
				if _, err := b.Promote(context.Background(), nil, "test", nil); err != nil {
					t.Fatal(err)
				}
				checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
			case newSide:
				checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
				checkNoCanary(t, b)
			}
			if again, err := b.Recover(context.Background()); err != nil || again != "" {
				t.Fatalf("a second recovery did %q, %v", again, err)
			}
		})
	}
}

func TestPendingListsTheHalvesOfABlueGreenRedeployAndWhatARecoveryWouldDo(t *testing.T) {
	for _, tc := range []struct {
		crash, kind, would string
	}{
		{"LeaveMaint", surgeJournal, "roll the new side back: app/srv-app-1b emptied into maintenance with its weight 7"},
		{"SetWeight app/srv-app-1b 7", surgeJournal, "finish it: prove the new side app/srv-app-1b (app:v2) again"},
		{"SetState app/srv-app-1 maint", retireJournal, "finish the retirement of the old side app/srv-app-1"},
	} {
		t.Run(tc.crash, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addPair("app-1", 7)
			a := pairAgent(t, w, slot)
			redeployUntilCrash(t, a, w, tc.crash)
			before := len(w.mutations())
			p, err := a.Pending(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if p.Journal != nil || len(p.Pairs) != 1 {
				t.Fatalf("pending %+v", p)
			}
			pp := p.Pairs[0]
			if pp.Kind != tc.kind || pp.Journal.Slot != slot.Name || !strings.HasPrefix(pp.Recover, tc.would) {
				t.Fatalf("pair pending %+v, want %s: %q", pp, tc.kind, tc.would)
			}
			if pp.Old == nil || pp.Old.State != "running" || pp.Live == nil || pp.Live.Server != slot.Server || pp.Idle == nil || pp.Idle.Server != slot.Alt.Server {
				t.Fatalf("what is there: old %+v, live %+v, idle %+v", pp.Old, pp.Live, pp.Idle)
			}
			if m := w.mutations()[before:]; len(m) != 0 {
				t.Fatalf("Pending changed %v", m)
			}
		})
	}
}

func TestAPairsCanaryIsNotPromotedWhenItsNewSideDoesNotServeNorUndoneWhenItsOldSideDoesNot(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	canaryOfPair(t, a, w, slot)
	all, _ := a.canaries()
	e := all[slot.Name].Surge
	// The new side's container died: a promotion would drain the only side that serves.
	w.mu.Lock()
	w.ctrs[e.NewID].Running = false
	w.mu.Unlock()
	before := len(w.mutations())
	if _, err := a.Promote(context.Background(), nil, "test", nil); err == nil || !strings.Contains(err.Error(), "does not serve") {
		t.Fatalf("promote of a dead canary: %v", err)
	}
	if m := w.mutations()[before:]; len(m) != 0 {
		t.Fatalf("a refused promotion changed %v", m)
	}
	w.mu.Lock()
	w.ctrs[e.NewID].Running = true
	w.ctrs[e.OldID].Running = false
	w.mu.Unlock()
	// The old side's container died: an undo would leave no side.
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v1"}, nil)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "no side that serves") {
		t.Fatalf("undo with the old side down: %v", err)
	}
	if m := w.mutations()[before:]; len(m) != 0 {
		t.Fatalf("a refused undo changed %v", m)
	}
	// --force with the canary's own image is skipped: only promote or undo end it.
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Force: true}, nil)
	if err != nil || rep.Slots[0].Result != ResultSkipped {
		t.Fatalf("forced redeploy of the canary's image: %+v, %v", rep.Slots, err)
	}
}

func TestACanaryOfAPairAtWeight0IsRefused(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 0)
	a := pairAgent(t, w, slot)
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2", CanaryPercent: 30}, nil)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "weight 0") {
		t.Fatalf("want a refusal, got %v", err)
	}
	if m := w.mutations(); len(m) != 0 {
		t.Fatalf("a refused canary changed %v", m)
	}
}

func TestPromoteSettlesAPairsSurgeCutOffBeforeItFirst(t *testing.T) {
	// Cut off after the canary was recorded, before its share: the surge
	// journal and the canary record are both there.
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	crashAt(t, w, "SetWeight app/srv-app-1b 3", func() {
		_, _ = a.Redeploy(context.Background(), Request{Image: "app:v2", CanaryPercent: 30}, nil)
	})
	b := pairAgent(t, w, slot)
	b.cfg.StateDir = a.cfg.StateDir
	lowest := w.watchCapacity()
	if _, err := b.Promote(context.Background(), nil, "test", nil); err != nil {
		t.Fatal(err)
	}
	checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
	checkNoCanary(t, b)
	if low := lowest(); low < 7 {
		t.Errorf("capacity fell to %d, want at least 7", low)
	}
	if did, err := b.Recover(context.Background()); err != nil || did != "" {
		t.Fatalf("a recovery after the promotion did %q, %v", did, err)
	}
}
