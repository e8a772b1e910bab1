package agent

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

func threeSlots(t *testing.T, w *world) []SlotConfig {
	t.Helper()
	return []SlotConfig{w.addSlot("app-1", 7), w.addSlot("app-2", 3), w.addSlot("app-3", 5)}
}

func TestRedeployReplacesEverySlotAndRestoresTheOriginalWeights(t *testing.T) {
	w := newWorld(t)
	slots := threeSlots(t, w)
	a := newTestAgent(t, w, slots...)
	var phases []Phase
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		if e.Slot == "app-1" {
			phases = append(phases, e.Phase)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The new container is created while the old one drains; either may
	// end first.
	want := []Phase{PhaseCreate, PhaseDrain, PhaseStop, PhaseStart, PhaseBoot, PhaseGate, PhaseRestore, PhaseCleanup}
	if len(phases) > 2 {
		slices.Sort(phases[:2])
	}
	if !slices.Equal(phases, want) {
		t.Fatalf("phases %v, want %v", phases, want)
	}
	for i, s := range slots {
		if rep.Slots[i].Result != ResultReplaced {
			t.Errorf("%s: %s %s", s.Name, rep.Slots[i].Result, rep.Slots[i].Err)
		}
		c, err := w.Inspect(context.Background(), s.Container)
		if err != nil || c.Image != "app:v2" || !c.Running {
			t.Errorf("%s: container %+v, %v", s.Name, c, err)
		}
		if got := w.servers["app/"+s.Server].stat.Weight; got != []int{7, 3, 5}[i] {
			t.Errorf("%s: weight %d, want the original", s.Name, got)
		}
	}
	if len(w.ctrs) != 3 {
		t.Errorf("%d containers left, want 3 (old ones removed)", len(w.ctrs))
	}
}

func TestSlotsAreReplacedOneAtATimeInConfigOrder(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	// Each slot's weight goes to 0 and back before the next one is drained.
	var weights []string
	for _, c := range w.mutations() {
		if strings.HasPrefix(c, "SetWeight") {
			weights = append(weights, c)
		}
	}
	want := []string{
		"SetWeight app/srv-app-1 0", "SetWeight app/srv-app-1 7",
		"SetWeight app/srv-app-2 0", "SetWeight app/srv-app-2 3",
		"SetWeight app/srv-app-3 0", "SetWeight app/srv-app-3 5",
	}
	if !slices.Equal(weights, want) {
		t.Fatalf("weights %q\nwant %q", weights, want)
	}
}

func TestTheGateForcesHealthDownBeforeRestoringTraffic(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	calls := w.mutations()
	maint := slices.Index(calls, "SetState app/srv-app-1 maint")
	stop := slices.Index(calls, "Stop app-1")
	down := slices.Index(calls, "LeaveMaint app/srv-app-1 ready")
	start := slices.Index(calls, "Start app-1")
	restore := slices.Index(calls, "SetWeight app/srv-app-1 7")
	if maint < 0 || down < 0 || !(maint < stop && start < down && down < restore) {
		t.Fatalf("want maint < Stop, Start < LeaveMaint (health down) < restore, got %q", calls)
	}
}

func TestANewAddressIsGivenToHAProxy(t *testing.T) {
	w := newWorld(t)
	w.ephemeral = true
	s := w.addSlot("app-1", 7)
	a := newTestAgent(t, w, s)
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := w.Inspect(context.Background(), "app-1")
	want := "127.0.0.1:" + itoa(c.Ports["8080/tcp"][0].HostPort)
	if got := w.servers["app/srv-app-1"].stat.Addr; got != want {
		t.Fatalf("haproxy points at %s, want %s", got, want)
	}
	if _, ok := rep.Slots[0].Phases[PhaseAddress]; !ok {
		t.Fatal("no address phase reported")
	}
}

func TestABrokenImageIsRolledBackAndLaterSlotsAreNotTouched(t *testing.T) {
	w := newWorld(t)
	slots := threeSlots(t, w)
	a := newTestAgent(t, w, slots...)
	oldID := w.byName("app-1").ID
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:broken"}, nil)
	if !errors.Is(err, ErrNotHealthy) {
		t.Fatalf("got %v, want ErrNotHealthy", err)
	}
	if rep.Slots[0].Result != ResultRolledBack || rep.Slots[1].Result != ResultNotRun || rep.Slots[2].Result != ResultNotRun {
		t.Fatalf("results: %+v", rep.Slots)
	}
	c := w.byName("app-1")
	if c.ID != oldID || !c.Running || c.Image != "app:v1" {
		t.Fatalf("app-1 is %+v, want the old container running under its name", c)
	}
	if len(w.ctrs) != 3 {
		t.Fatalf("%d containers, want 3: the broken one removed", len(w.ctrs))
	}
	if st := w.servers["app/srv-app-1"].stat; st.Weight != 7 {
		t.Fatalf("weight %d, want 7", st.Weight)
	}
	for _, c := range w.mutations() {
		if strings.Contains(c, "app-2") || strings.Contains(c, "app-3") {
			t.Fatalf("touched a later slot: %s", c)
		}
	}
}

func TestAFailedStartIsRolledBackEvenWhenTheCallerGaveUp(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	ctx, cancel := context.WithCancel(context.Background())
	w.fail["Clone"] = errors.New("daemon went away")
	cancel() // the operator hit ^C: the rollback must still run to the end
	_, err := a.Redeploy(context.WithoutCancel(ctx), Request{Image: "app:v2"}, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	c := w.byName("app-1")
	if c == nil || !c.Running || c.Image != "app:v1" {
		t.Fatalf("old container not back: %+v", c)
	}
	if w.servers["app/srv-app-1"].stat.Weight != 7 {
		t.Fatal("weight not restored")
	}
}

func TestACancelledContextStillRollsBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	ctx, cancel := context.WithCancel(context.Background())
	rep, err := a.Redeploy(ctx, Request{Image: "app:v2"}, func(e Event) {
		if e.Phase == PhaseStop {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if rep.Slots[0].Result != ResultRolledBack {
		t.Fatalf("result %s: %s", rep.Slots[0].Result, rep.Slots[0].Err)
	}
	if c := w.byName("app-1"); !c.Running || c.Image != "app:v1" {
		t.Fatalf("old container not back: %+v", c)
	}
	if w.servers["app/srv-app-1"].stat.Weight != 7 {
		t.Fatal("weight not restored")
	}
}

func TestADrainTimeoutRestoresTheWeightAndLeavesTheOldContainerAlone(t *testing.T) {
	w := newWorld(t)
	w.sessions = 1 << 30 // sessions that never end
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Drain.Timeout = 50 * 1e6
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("got %v, want ErrDrainTimeout", err)
	}
	// The new container, created while the old one drained, is removed.
	// The server went into maintenance for the drain (beside the create:
	// either may come first); the old container, never stopped, is proven
	// by fresh checks on the way out of it.
	got := w.mutations()
	maint := slices.Index(got, "SetState app/srv-app-1 maint")
	if maint < 0 || maint > slices.Index(got, "Stop app-1-haroll-next") {
		t.Fatalf("calls %q: want maintenance before the new container stops", got)
	}
	got = slices.Delete(got, maint, maint+1)
	want := []string{"SetWeight app/srv-app-1 0", "Clone app:v2 app-1-haroll-next",
		"Stop app-1-haroll-next", "Remove app-1-haroll-next", "LeaveMaint app/srv-app-1 ready", "SetWeight app/srv-app-1 7"}
	if !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if len(w.ctrs) != 1 || !w.byName("app-1").Running {
		t.Fatalf("containers %v", w.ctrs)
	}
}

func TestOnTimeoutShutdownCutsTheSessionsAndProceeds(t *testing.T) {
	w := newWorld(t)
	w.sessions = 1 << 30
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Drain.Timeout = 50 * 1e6
	a.cfg.Drain.OnTimeout = OnTimeoutShutdown
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(w.mutations(), "ShutdownSessions app/srv-app-1") || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("calls %q, result %s", w.mutations(), rep.Slots[0].Result)
	}
}

func TestDrainStateModeUsesTheDrainStateAndGivesReadyBack(t *testing.T) {
	w := newWorld(t)
	w.sessions = 3
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Drain.Mode = DrainState
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	calls := w.mutations()
	if calls[0] != "SetState app/srv-app-1 drain" || !slices.Contains(calls, "SetState app/srv-app-1 ready") {
		t.Fatalf("calls %q", calls)
	}
	if w.servers["app/srv-app-1"].admin.State != runtime.StateReady {
		t.Fatal("not ready at the end")
	}
}

func TestASlotAlreadyOnTheImageIsSkippedUnlessForced(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v1"}, nil)
	if err != nil || rep.Slots[0].Result != ResultSkipped || len(w.mutations()) != 0 {
		t.Fatalf("got %+v, %v, calls %q", rep.Slots, err, w.mutations())
	}
	rep, err = a.Redeploy(context.Background(), Request{Image: "app:v1", Force: true}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("forced: %+v, %v", rep.Slots, err)
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	for name, tc := range map[string]struct {
		req   Request
		setup func(w *world)
		want  error
	}{
		"unknown slot":         {req: Request{Image: "app:v2", Slots: []string{"nope"}}, want: ErrUnknownSlot},
		"unknown image":        {req: Request{Image: "app:v9"}, want: docker.ErrImageNotFound},
		"invalid image":        {req: Request{Image: "App:V2!"}, want: ErrInvalidImage},
		"missing container":    {req: Request{Image: "app:v2"}, setup: func(w *world) { delete(w.ctrs, w.byName("app-2").ID) }, want: docker.ErrContainerNotFound},
		"unknown server":       {req: Request{Image: "app:v2"}, setup: func(w *world) { delete(w.servers, "app/srv-app-3") }, want: runtime.ErrNoSuchServer},
		"server without check": {req: Request{Image: "app:v2"}, setup: func(w *world) { w.servers["app/srv-app-1"].admin.Checked = false }, want: ErrPreflight},
		"server in maint":      {req: Request{Image: "app:v2"}, setup: func(w *world) { w.servers["app/srv-app-1"].admin.State = runtime.StateMaint }, want: ErrPreflight},
		"too few serving": {req: Request{Image: "app:v2"}, setup: func(w *world) {
			w.byName("app-2").Running = false // its checks fail: DOWN
			w.servers["app/srv-app-2"].stat.CheckHealth = 0
			w.servers["app/srv-app-3"].stat.Weight = 0
			w.servers["app/other"].stat.Status = "MAINT"
		}, want: ErrMinServing},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			a := newTestAgent(t, w, threeSlots(t, w)...)
			if tc.setup != nil {
				tc.setup(w)
			}
			_, err := a.Redeploy(context.Background(), tc.req, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if got := w.mutations(); len(got) != 0 {
				t.Fatalf("a bad request changed things: %q", got)
			}
		})
	}
}

func TestASecondRedeployOnTheHostIsBusy(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	lock, err := AcquireLock(a.cfg.StateDir, "pid 1: rollout of app:v3")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, err = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "rollout of app:v3") {
		t.Fatalf("got %v, want ErrBusy naming the holder", err)
	}
}

func TestAnImageOutsideAllowedImagesIsRefused(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.AllowedImages = []string{"registry.local/app:*"}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); !errors.Is(err, ErrImageNotAllowed) {
		t.Fatalf("got %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
