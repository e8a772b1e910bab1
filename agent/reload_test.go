package agent

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/runtime"
)

// deadPid returns the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestAReloadDuringTheDrainHasTheDrainReapplied(t *testing.T) {
	w := newWorld(t)
	w.sessions = 100
	w.pid = deadPid(t) - 1 // the worker before the reload is gone by then
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	go func() {
		time.Sleep(30 * time.Millisecond)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.pid = 1 << 22 // a new worker, with the configuration's weight back
		w.servers["app/srv-app-1"].stat.Weight = 7
	}()
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	drains := 0
	for _, c := range w.mutations() {
		if c == "SetWeight app/srv-app-1 0" {
			drains++
		}
	}
	if drains != 2 {
		t.Fatalf("weight 0 set %d times, want 2 (once more after the reload): %q", drains, w.mutations())
	}
}

func TestADrainWaitsForTheOldWorkerToExit(t *testing.T) {
	w := newWorld(t)
	w.sessions = 100
	old := exec.Command("sleep", "0.5") // the old worker, still serving its sessions
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	go old.Wait()
	w.pid = old.Process.Pid - 1
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	go func() {
		time.Sleep(20 * time.Millisecond)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.pid = 1 << 22
	}()
	var drain time.Duration
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		if e.Phase == PhaseDrain {
			drain = e.Duration
		}
	}); err != nil {
		t.Fatal(err)
	}
	if drain < 400*time.Millisecond {
		t.Fatalf("the drain ended after %s, before the old worker exited", drain)
	}
	if !slices.Contains(w.mutations(), "SetWeight app/srv-app-1 7") {
		t.Fatal("weight not restored")
	}
}

// TestAReloadInAnyPhaseHasTheServerHeldAgainAtOnce reloads HAProxy at the
// end of each phase between the drain and the gate, when no wait of the
// replacement is asking HAProxy anything: the guard must put the server back
// in maintenance (and at weight 0, at its new address) before the
// replacement goes on, so that neither the stopped old container nor the
// unproven new one is ever selectable (the fake checks both after every
// call).
func TestAReloadInAnyPhaseHasTheServerHeldAgainAtOnce(t *testing.T) {
	for _, tc := range []struct {
		phase      Phase
		startFirst bool
	}{
		{PhaseStop, false}, {PhaseStart, false}, {PhaseBoot, false},
		{PhaseBoot, true}, {PhaseAddress, true}, {PhasePostReplace, true},
	} {
		name := string(tc.phase) + "/stop-first"
		if tc.startFirst {
			name = string(tc.phase) + "/start-first"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.pid = deadPid(t) - 1
			slot := w.addSlot("app-1", 7)
			if tc.startFirst {
				w.startFirst()
			}
			a := newTestAgent(t, w, slot)
			if tc.phase == PhasePostReplace {
				a.cfg.Hooks.PostReplace = hookConfig(t, "exit 0\n")
			}
			next := deadPid(t)
			held := false
			events := after(w, tc.phase, func() {
				maints := countCalls(w, "SetState app/srv-app-1 maint")
				w.reload(next)
				deadline := time.Now().Add(2 * time.Second)
				for countCalls(w, "SetState app/srv-app-1 maint") == maints && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				w.mu.Lock()
				defer w.mu.Unlock()
				held = w.servers["app/srv-app-1"].admin.State == runtime.StateMaint
			})
			if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, events); err != nil {
				t.Fatal(err)
			}
			if !held {
				t.Fatalf("after a reload at the end of %s the server was not put back in maintenance: %q", tc.phase, w.mutations())
			}
			if st := w.servers["app/srv-app-1"].stat; st.Weight != 7 || w.byName("app-1").Image != "app:v2" {
				t.Fatalf("after: weight %d, image %s", st.Weight, w.byName("app-1").Image)
			}
		})
	}
}

// TestPinnedClientsAreMovedByMaintenanceAndTheDrainEnds: at weight 0 the
// pinned clients keep the server's sessions up for good (as in HAProxy);
// only maintenance moves them, after which the sessions in flight end.
func TestPinnedClientsAreMovedByMaintenanceAndTheDrainEnds(t *testing.T) {
	w := newWorld(t)
	w.pinned = true
	w.sessions = 20
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Drain.Grace = 100 * time.Millisecond // pinned clients served at weight 0 this long
	var drain Event
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		if e.Phase == PhaseDrain {
			drain = e
		}
	}); err != nil {
		t.Fatal(err)
	}
	if drain.Duration < 100*time.Millisecond || !strings.Contains(drain.Detail, "in MAINT") {
		t.Fatalf("drain %s %q: want the grace at weight 0, then empty in MAINT", drain.Duration, drain.Detail)
	}
	calls := w.mutations()
	if maint, stop := slices.Index(calls, "SetState app/srv-app-1 maint"), slices.Index(calls, "Stop app-1"); maint < 0 || stop < maint {
		t.Fatalf("calls %q: want maintenance before the stop", calls)
	}
}

// TestWithRiseOneAndFallOneTheGateIsPassedTwice: a single success makes
// such a server fully up, and the first check to end after leaving
// maintenance may have started against the old address.
func TestWithRiseOneAndFallOneTheGateIsPassedTwice(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	w.startFirst()
	s := w.servers["app/srv-app-1"]
	s.stat.CheckRise, s.stat.CheckFall, s.stat.CheckHealth = 1, 1, 1
	a := newTestAgent(t, w, slot)
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := w.mutations()
	leave := slices.Index(calls, "LeaveMaint app/srv-app-1 ready")
	again := slices.Index(calls, "ForceHealthDown app/srv-app-1")
	restore := slices.Index(calls, "SetWeight app/srv-app-1 7")
	if leave < 0 || !(leave < again && again < restore) {
		t.Fatalf("calls %q: want LeaveMaint, a second health down, then the restore", calls)
	}
	if rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("result %s", rep.Slots[0].Result)
	}
}
