package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/haroll/haroll/runtime"
)

// addPair adds a blue/green slot: its server at weight, live, with a
// running app:v1 container on a fixed host port, and the alt server, idle
// in maintenance, at the next port. It returns the slot; pairAgent writes the
// haproxy.cfg that declares them.
func (w *world) addPair(name string, weight int) SlotConfig {
	s := w.addSlot(name, weight)
	w.nextPrt++
	alt := s.Server + "b"
	addr := fmt.Sprintf("127.0.0.1:%d", w.nextPrt)
	w.servers["app/"+alt] = &fakeServer{weight: weight, addr: addr,
		stat:  runtime.ServerStat{Backend: "app", Server: alt, Status: "MAINT", Weight: weight, CheckStatus: "L4CON", CheckRise: 2, CheckFall: 2, Addr: addr, Checked: true},
		admin: runtime.Admin{State: runtime.StateMaint, Checked: true},
	}
	s.Alt = &AltConfig{Server: alt, Port: w.nextPrt}
	return s
}

// pairAgent is newTestAgent with a haproxy.cfg declaring slots' servers (the
// alt ones disabled), the backend's other server, and a server-state file.
func pairAgent(t *testing.T, w *world, slots ...SlotConfig) *Agent {
	t.Helper()
	a := newTestAgent(t, w, slots...)
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    server-state-file %s\n\ndefaults\n    mode http\n    load-server-state-from-file global\n\nbackend app\n    server other 127.0.0.1:1\n", filepath.Join(dir, "server-state"))
	for _, s := range slots {
		fmt.Fprintf(&b, "    server %s %s check\n", s.Server, w.servers["app/"+s.Server].addr)
		if s.Alt != nil {
			fmt.Fprintf(&b, "    server %s %s check disabled\n", s.Alt.Server, w.servers["app/"+s.Alt.Server].addr)
		}
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	a.cfg.HAProxy.Config = cfg
	return a
}

// capacity is the sum of the weights of the backend's servers HAProxy may
// balance requests to: ready (not in maintenance, not draining) and up.
func (w *world) capacity() int {
	sum := 0
	for _, s := range w.servers {
		if s.admin.State == runtime.StateReady && (s.stat.CheckHealth >= s.stat.CheckRise || !s.stat.Checked) {
			sum += s.stat.Weight
		}
	}
	return sum
}

// watchCapacity records the lowest capacity seen after every mutating call.
func (w *world) watchCapacity() (lowest func() int) {
	w.mu.Lock()
	low := w.capacity()
	w.mu.Unlock()
	// After every mutating call and at every poll: a forced `health down`
	// shows at the polls that follow it.
	w.afterCall = func(string) { low = min(low, w.capacity()) }
	w.beforePoll = func(*fakeServer) { low = min(low, w.capacity()) }
	return func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return low
	}
}

// liveSides returns the pair's servers that are out of maintenance.
func (w *world) liveSides(s SlotConfig) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var live []string
	for _, name := range []string{s.Server, s.Alt.Server} {
		if w.servers["app/"+name].admin.State != runtime.StateMaint {
			live = append(live, name)
		}
	}
	return live
}

// checkPairServes fails unless exactly one side of s is live, at weight,
// pointing at the only container of the slot, which runs image.
func checkPairServes(t *testing.T, w *world, s SlotConfig, live, image string, weight int) {
	t.Helper()
	if got := w.liveSides(s); !slices.Equal(got, []string{live}) {
		t.Fatalf("live sides %v, want [%s]", got, live)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	srv := w.servers["app/"+live]
	c := w.containerAt(srv.stat.Addr)
	if c == nil || c.Name != s.Container || c.Image != image {
		t.Fatalf("%s at %s serves %+v, want %s on %s", live, srv.stat.Addr, c, s.Container, image)
	}
	if srv.stat.Weight != weight {
		t.Fatalf("%s at weight %d, want %d", live, srv.stat.Weight, weight)
	}
	idle := w.servers["app/"+s.twin(live)]
	if idle.stat.Weight != weight {
		t.Fatalf("idle %s at weight %d, want %d kept for its next turn", s.twin(live), idle.stat.Weight, weight)
	}
	n := 0
	for _, c := range w.ctrs {
		if strings.HasPrefix(c.Name, s.Container) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d containers of slot %s, want 1", n, s.Name)
	}
}

func TestABlueGreenRedeployBringsTheNewSideUpBeforeTheOldOneIsDrainedAndFlipsBackNextTime(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	lowest := w.watchCapacity()
	start := lowest()
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v", rep.Slots[0])
	}
	checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
	if low := lowest(); low < start {
		t.Fatalf("capacity fell to %d, from %d", low, start)
	}
	// The new side got its weight before the old side was drained.
	calls := w.mutations()
	given := slices.Index(calls, "SetWeight app/"+slot.Alt.Server+" 7")
	drained := slices.Index(calls, "SetWeight app/"+slot.Server+" 0")
	if given < 0 || drained < 0 || given > drained {
		t.Fatalf("weight given at %d, old side drained at %d: %v", given, drained, calls)
	}
	// The next redeploy flips back.
	w.images["app:v3"] = "sha256:v3"
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v3"}, nil); err != nil {
		t.Fatal(err)
	}
	checkPairServes(t, w, slot, slot.Server, "app:v3", 7)
	if low := lowest(); low < start {
		t.Fatalf("capacity fell to %d, from %d", low, start)
	}
	st, err := a.Status(context.Background())
	if err != nil || st[0].LiveServer != slot.Server || st[0].AltServer != slot.Alt.Server {
		t.Fatalf("status %+v, %v", st, err)
	}
	hist, err := a.History(HistoryQuery{Slot: slot.Name})
	if err != nil || len(hist) != 2 {
		t.Fatalf("history %+v, %v", hist, err)
	}
	for i, want := range []struct{ before, after, strategy string }{ // newest first
		{"app:v2", "app:v3", "blue-green srv-app-1b->srv-app-1"},
		{"app:v1", "app:v2", "blue-green srv-app-1->srv-app-1b"},
	} {
		h := hist[i]
		if h.ImageBefore != want.before || h.ImageAfter != want.after || h.Strategy != want.strategy || h.Result != ResultReplaced {
			t.Errorf("history entry %+v, want %s -> %s by %s", h, want.before, want.after, want.strategy)
		}
	}
}

func TestABrokenImageOnTheNewSideLeavesTheOldSideUntouched(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	lowest := w.watchCapacity()
	start := lowest()
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:broken"}, nil)
	if err == nil || rep.Slots[0].Result != ResultRolledBack {
		t.Fatalf("%+v, %v", rep.Slots, err)
	}
	checkPairServes(t, w, slot, slot.Server, "app:v1", 7)
	for _, c := range w.mutations() {
		if strings.Contains(c, "app/"+slot.Server+" ") {
			t.Fatalf("the live side was touched: %s", c)
		}
	}
	if low := lowest(); low < start {
		t.Fatalf("capacity fell to %d, from %d", low, start)
	}
	if e, _ := a.pairJournal(surgeJournal, slot.Name).Read(); e != nil {
		t.Fatalf("journal left: %+v", e)
	}
}

func TestACrashAtEachStepOfABlueGreenRedeployIsFinishedOrUndoneWithOneSideLive(t *testing.T) {
	for _, tc := range []struct {
		name, crashBefore string
		wantLive          func(SlotConfig) string
		wantImage         string
	}{
		{"idle side held, before the rename", "Rename", primary, "app:v1"},
		{"renamed, before the create", "Clone", primary, "app:v1"},
		{"created, before the start", "Start", primary, "app:v1"},
		{"booted, before the gate", "LeaveMaint", primary, "app:v1"},
		{"gate passed, before the weight", "SetWeight app/srv-app-1b 7", alt, "app:v2"},
		{"new side weighted, before the old side drains", "SetWeight app/srv-app-1 0", alt, "app:v2"},
		{"old side draining, before maintenance", "SetState app/srv-app-1 maint", alt, "app:v2"},
		{"old side drained, before its weight comes back", "SetWeight app/srv-app-1 7", alt, "app:v2"},
		{"old side idle, before the old container is removed", "Stop", alt, "app:v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addPair("app-1", 7)
			a := pairAgent(t, w, slot)
			redeployUntilCrash(t, a, w, tc.crashBefore)
			b := pairAgent(t, w, slot)
			b.cfg.StateDir = a.cfg.StateDir
			// The slot's weight, 7, serves throughout the recovery: a side
			// that serves is never forced down.
			lowest := w.watchCapacity()
			did, err := b.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if did == "" {
				t.Fatal("recovery found nothing to do")
			}
			if low := lowest(); low < 7 {
				t.Errorf("capacity fell to %d during the recovery, want at least 7", low)
			}
			checkPairServes(t, w, slot, tc.wantLive(slot), tc.wantImage, 7)
			if again, err := b.Recover(context.Background()); err != nil || again != "" {
				t.Fatalf("a second recovery did %q, %v", again, err)
			}
		})
	}
}

func primary(s SlotConfig) string { return s.Server }
func alt(s SlotConfig) string     { return s.Alt.Server }

func TestMaxSurgeBringsSeveralPairsUpAtOnceAndCapacityNeverDips(t *testing.T) {
	w := newWorld(t)
	slots := []SlotConfig{w.addPair("app-1", 3), w.addPair("app-2", 5), w.addPair("app-3", 7)}
	a := pairAgent(t, w, slots...)
	lowest := w.watchCapacity()
	start := lowest()
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", MaxSurge: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range slots {
		if rep.Slots[i].Slot != s.Name || rep.Slots[i].Result != ResultReplaced {
			t.Fatalf("report %+v", rep.Slots)
		}
		checkPairServes(t, w, s, s.Alt.Server, "app:v2", []int{3, 5, 7}[i])
	}
	if low := lowest(); low < start {
		t.Fatalf("capacity fell to %d, from %d", low, start)
	}
	// All three new containers were started before any old side drained.
	calls := w.mutations()
	lastStart, firstDrain := -1, len(calls)
	for i, c := range calls {
		if strings.HasPrefix(c, "Start ") {
			lastStart = i
		}
		if strings.HasSuffix(c, " 0") && strings.HasPrefix(c, "SetWeight app/srv-app-") && !strings.Contains(c, "b 0") && i < firstDrain {
			firstDrain = i
		}
	}
	if lastStart > firstDrain {
		t.Fatalf("with max_surge 3 every surge starts before the first drain: %v", calls)
	}
}

func TestPreflightRefusesAPairWithoutAStateFileOrWithBothSidesLive(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	cfg, _ := os.ReadFile(a.cfg.HAProxy.Config)
	noState := strings.Replace(string(cfg), "    load-server-state-from-file global\n", "", 1)
	if err := os.WriteFile(a.cfg.HAProxy.Config, []byte(noState), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err == nil || !strings.Contains(err.Error(), "server-state") {
		t.Fatalf("want a refusal naming the server-state file, got %v", err)
	}
	// A state file the agent cannot write: every step saves the states there.
	gone := strings.Replace(string(cfg), "server-state-file ", "server-state-file /nonexistent", 1)
	if err := os.WriteFile(a.cfg.HAProxy.Config, []byte(gone), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot save the servers' states") {
		t.Fatalf("want a refusal: state file not writable, got %v", err)
	}
	if err := os.WriteFile(a.cfg.HAProxy.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	w.servers["app/"+slot.Alt.Server].admin.State = runtime.StateReady
	_, err = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err == nil || !strings.Contains(err.Error(), "neither is in maintenance") {
		t.Fatalf("want a refusal: both sides live, got %v", err)
	}
	w.servers["app/"+slot.Alt.Server].admin.State = runtime.StateMaint
	// Without fixed ports the idle server is pointed at the new container:
	// servers written as IP addresses lose that at a reload.
	w.startFirst()
	ephemeral := slot
	ephemeral.Alt = &AltConfig{Server: slot.Alt.Server}
	b := pairAgent(t, w, ephemeral)
	_, err = b.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if err == nil || !strings.Contains(err.Error(), "host name") {
		t.Fatalf("want a refusal: addresses not kept by a reload, got %v", err)
	}
	if m := w.mutations(); len(m) != 0 {
		t.Fatalf("a refused redeploy changed %v", m)
	}
}

func TestAPairWithoutFixedPortsPointsTheIdleServerAtTheNewContainer(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	w.startFirst()
	slot.Alt.Port = 0
	a := pairAgent(t, w, slot)
	// Servers written with a host name: a reload keeps a runtime address.
	cfg, _ := os.ReadFile(a.cfg.HAProxy.Config)
	if err := os.WriteFile(a.cfg.HAProxy.Config, []byte(strings.ReplaceAll(string(cfg), " 127.0.0.1:", " localhost:")), 0o644); err != nil {
		t.Fatal(err)
	}
	lowest := w.watchCapacity()
	start := lowest()
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
	if !slices.ContainsFunc(w.mutations(), func(c string) bool { return strings.HasPrefix(c, "SetAddr app/"+slot.Alt.Server) }) {
		t.Fatalf("the idle server was not pointed at the new container: %v", w.mutations())
	}
	if low := lowest(); low < start {
		t.Fatalf("capacity fell to %d, from %d", low, start)
	}
}

func TestAReloadThatLoadsTheStatesOfBeforeTheSurgeIsUndoneOnTheNewSide(t *testing.T) {
	for _, tc := range []struct {
		name string
		// when reports whether the poll of s is where the reload comes.
		when func(s *fakeServer) bool
	}{
		// The state file saved in preflight has the idle side in
		// maintenance: loaded mid-gate, it puts it back there.
		{"mid-gate", func(s *fakeServer) bool {
			return s.stat.Server == "srv-app-1b" && s.admin.State != runtime.StateMaint && s.stat.Weight == 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.pid = deadPid(t) - 1
			slot := w.addPair("app-1", 7)
			a := pairAgent(t, w, slot)
			next := deadPid(t)
			reloaded := false
			w.beforePoll = func(s *fakeServer) {
				if reloaded || !tc.when(s) {
					return
				}
				reloaded = true
				// What HAProxy loads: the live side at 7, the idle one in
				// maintenance at 7, as saved in preflight.
				w.pid = next - 1
				s.admin.State, s.stat.Weight, s.stat.Status = runtime.StateMaint, 7, "MAINT"
			}
			if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
				t.Fatal(err)
			}
			if !reloaded {
				t.Fatal("no reload happened")
			}
			checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
		})
	}
}

func TestTheNewSideGivenItsWeightIsHeldThereThroughAReload(t *testing.T) {
	// Between its weight and the next save of the states, a reload loads
	// the states of before: the new side in maintenance.
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	plans, err := a.preflight(context.Background(), Request{Image: "app:v2"}, []SlotConfig{slot}, nil, func(Event) {})
	if err != nil {
		t.Fatal(err)
	}
	r := a.newSurge(plans[0], "app:v2", func(Event) {})
	r.serving = 7
	w.servers["app/"+slot.Alt.Server].admin.State = runtime.StateMaint
	if err := r.reapply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := w.servers["app/"+slot.Alt.Server]; s.admin.State != runtime.StateReady || s.stat.Weight != 7 {
		t.Fatalf("new side %s at weight %d after the re-apply, want ready at 7", s.admin.State, s.stat.Weight)
	}
}
