package agent

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"
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
