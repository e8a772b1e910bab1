package agent

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/runtime"
)

// stateLine returns the fields of server's line in a saved state file
// (lineOf), failing t when there is none or it is short.
func stateLine(t *testing.T, text, server string) []string {
	t.Helper()
	f := lineOf(text, server)
	if len(f) <= 7 {
		t.Fatalf("no %s in the state file:\n%s", server, text)
	}
	return f
}

// slowStates delays the reply of one `show servers state` chosen by pick,
// until release is closed, as a slow socket or a descheduled goroutine would.
type slowStates struct {
	*world
	mu      sync.Mutex
	pick    func() bool // under world.mu
	picked  chan struct{}
	release chan struct{}
	once    bool
}

func (s *slowStates) ServersState(ctx context.Context) (string, error) {
	text, err := s.world.ServersState(ctx)
	s.world.mu.Lock()
	hit := !s.once && s.pick()
	if hit {
		s.once = true
	}
	s.world.mu.Unlock()
	if hit {
		close(s.picked)
		select {
		case <-s.release:
		case <-time.After(5 * time.Second):
		}
	}
	return text, err
}

func TestConcurrentSavesOfTheServersStatesLeaveTheNewestOnDisk(t *testing.T) {
	// max_surge 1: slot A's retirement overlaps slot B's surge; both save
	// the whole `show servers state` to the one file.
	w := newWorld(t)
	sa, sb := w.addPair("app-1", 3), w.addPair("app-2", 5)
	a := pairAgent(t, w, sa, sb)
	a.cfg.Health.Timeout = 5 * time.Second
	slow := &slowStates{world: w, picked: make(chan struct{}), release: make(chan struct{})}
	// A's retirement save: A's old side back at its weight in maintenance.
	slow.pick = func() bool {
		o := w.servers["app/"+sa.Server]
		return o.admin.State == runtime.StateMaint && o.stat.Weight == 3
	}
	a.haproxy = slow
	if os.Getenv("NOSLOW") != "" {
		slow.pick = func() bool { return false }
		close(slow.picked)
	}
	// B's gate waits until A's save has read the states.
	w.beforePoll = func(s *fakeServer) {
		select {
		case <-slow.picked:
		default:
			if s.stat.Server == sb.Alt.Server {
				s.stat.CheckHealth = 0
			}
		}
	}
	var relOnce sync.Once
	w.afterCall = func(call string) {
		if strings.HasPrefix(call, "Remove "+sb.Container+prevSuffix) {
			relOnce.Do(func() { close(slow.release) })
		}
	}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	checkPairServes(t, w, sb, sb.Alt.Server, "app:v2", 5)
	plans, _ := loadHAProxyConfig(a.cfg.HAProxy.Config).pair("app")
	b, err := os.ReadFile(plans.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	// srv_admin_state is field 6, srv_uweight 7.
	old, neu := stateLine(t, string(b), sb.Server), stateLine(t, string(b), sb.Alt.Server)
	if old[6] != "1" || neu[6] == "1" || neu[7] != "5" {
		t.Fatalf("after the redeploy the state file has B's old side %s admin %s weight %s, new side %s admin %s weight %s:"+
			" a reload now sends B's traffic to the removed old container; want old in maintenance, new ready at 5",
			sb.Server, old[6], old[7], sb.Alt.Server, neu[6], neu[7])
	}
}

func TestAPairsSaveDuringAnotherSlotsReplacementDoesNotPersistThatSlotDrained(t *testing.T) {
	// A pair and a plain slot in one backend: the pair's retirement runs
	// while the plain slot is replaced, and saves every server's state.
	w := newWorld(t)
	sa, sb := w.addPair("app-1", 3), w.addSlot("app-2", 7)
	a := pairAgent(t, w, sa, sb)
	// B's gate waits for A's drain and save: 2 s was once too short beside
	// the package's other tests on 2 cores, and no timeout is tested here.
	a.cfg.Health.Timeout = 10 * time.Second
	aSaved := make(chan struct{})
	slow := &slowStates{world: w, picked: aSaved, release: make(chan struct{})}
	close(slow.release)
	slow.pick = func() bool {
		o := w.servers["app/"+sa.Server]
		return o.admin.State == runtime.StateMaint && o.stat.Weight == 3
	}
	a.haproxy = slow
	w.beforePoll = func(s *fakeServer) {
		select {
		case <-aSaved:
			return
		default:
		}
		b := w.servers["app/"+sb.Server]
		switch {
		case s.stat.Server == sa.Server && b.admin.State != runtime.StateMaint:
			s.left = 2 // A's old side drains until B is in maintenance
		case s.stat.Server == sb.Server && s.fromZero:
			s.stat.CheckHealth = 0 // B's gate waits for A's save
		}
	}
	if os.Getenv("NOHOLD") != "" {
		w.beforePoll = nil
	}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	pc, _ := loadHAProxyConfig(a.cfg.HAProxy.Config).pair("app")
	text, err := os.ReadFile(pc.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	live := w.servers["app/"+sb.Server]
	adm, weight := live.admin.State, live.stat.Weight
	w.mu.Unlock()
	f := stateLine(t, string(text), sb.Server)
	if f[6] != "0" || f[7] != "7" {
		t.Fatalf("HAProxy has %s %s at weight %d, but the state file a reload loads has admin %s weight %s: the next reload takes the plain slot out", sb.Server, adm, weight, f[6], f[7])
	}
}

func TestAPairJournalThatCannotBeRecoveredCanBeAbandoned(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	redeployUntilCrash(t, a, w, "Start")
	// The operator removed the old container by hand meanwhile.
	w.mu.Lock()
	for id, c := range w.ctrs {
		if c.Name == slot.Container+prevSuffix {
			delete(w.ctrs, id)
		}
	}
	w.mu.Unlock()
	b := pairAgent(t, w, slot)
	b.cfg.StateDir = a.cfg.StateDir
	_, rerr := b.Recover(context.Background())
	if rerr == nil {
		t.Skip("the recovery settled it")
	}
	t.Logf("recover: %v", rerr)
	_, err := b.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{slot.Name}}, nil)
	t.Logf("redeploy: %v", err)
	if _, aerr := b.Abandon(context.Background(), "test"); aerr != nil {
		t.Fatalf("the pair's journal cannot be recovered (%v) and cannot be abandoned either: %v", rerr, aerr)
	}
}

func TestASlotReplacedBeforeACrashIsInTheHistory(t *testing.T) {
	// Two plain slots: the first is replaced, the agent dies in the second.
	w := newWorld(t)
	s1, s2 := w.addSlot("app-1", 7), w.addSlot("app-2", 7)
	a := newTestAgent(t, w, s1, s2)
	redeployUntilCrash(t, a, w, "Clone app:v2 app-2")
	hist, err := a.History(HistoryQuery{Slot: s1.Name})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Result != ResultReplaced {
		t.Fatalf("slot %s was replaced before the crash; history %+v", s1.Name, hist)
	}
}

func TestStatusDuringASurgeIsNoError(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	var st []SlotStatus
	var serr error
	w.afterCall = func(call string) {
		if call == "SetWeight app/"+slot.Alt.Server+" 7" && st == nil {
			w.afterCall = nil
			w.mu.Unlock()
			st, serr = a.Status(context.Background())
			w.mu.Lock()
		}
	}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	if serr != nil || st[0].Err != "" {
		t.Fatalf("status mid-redeploy (the new side given its weight, the old one not yet drained): %v; slot error %q, pending %+v", serr, st[0].Err, st[0].Pending)
	}
}

func TestARetirementRecoveredAfterTheNewSideLostItsTrafficLeavesOneSideLive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(w *world, s SlotConfig)
	}{
		// A reload loaded a state file that has the new side in
		// maintenance (written stale, or by hand).
		{"new side in maintenance", func(w *world, s SlotConfig) {
			n := w.servers["app/"+s.Alt.Server]
			n.admin.State, n.stat.Status = runtime.StateMaint, "MAINT"
		}},
		// The new container exited while the agent was down.
		{"new container exited", func(w *world, s SlotConfig) {
			w.byName(s.Container).Running = false
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addPair("app-1", 7)
			a := pairAgent(t, w, slot)
			redeployUntilCrash(t, a, w, "SetWeight app/srv-app-1 0")
			w.mu.Lock()
			tc.after(w, slot)
			w.mu.Unlock()
			b := pairAgent(t, w, slot)
			b.cfg.StateDir = a.cfg.StateDir
			did, err := b.Recover(context.Background())
			t.Logf("recover: %q, %v", did, err)
			w.mu.Lock()
			for i := 0; i < 5; i++ { // a few checks of every server
				for _, name := range []string{slot.Server, slot.Alt.Server} {
					w.mu.Unlock()
					_, _ = w.Server(context.Background(), "app", name)
					w.mu.Lock()
				}
			}
			c := w.capacity()
			w.mu.Unlock()
			if c < 7 {
				t.Fatalf("after the recovery the slot's capacity is %d (live sides %v), was 7 before the redeploy", c, w.liveSides(slot))
			}
		})
	}
}

func TestAProvenSurgeIsFinishedAfterAReloadPutTheNewSideBackInMaintenance(t *testing.T) {
	w := newWorld(t)
	slot := w.addPair("app-1", 7)
	a := pairAgent(t, w, slot)
	redeployUntilCrash(t, a, w, "SetWeight app/srv-app-1b 7")
	// HAProxy reloads before the agent is back: the state file saved in
	// preflight has the idle side in maintenance at 7.
	w.mu.Lock()
	n := w.servers["app/"+slot.Alt.Server]
	n.admin.State, n.stat.Status, n.stat.Weight = runtime.StateMaint, "MAINT", 7
	w.pid += 10
	w.mu.Unlock()
	b := pairAgent(t, w, slot)
	b.cfg.StateDir = a.cfg.StateDir
	did, err := b.Recover(context.Background())
	t.Logf("recover: %q, %v", did, err)
	checkPairServes(t, w, slot, slot.Alt.Server, "app:v2", 7)
}
