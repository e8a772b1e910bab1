package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/docker"
)

// redeployUntilCrash runs a redeploy that dies at the first call starting with
// point, leaving the journal as a killed process would.
func redeployUntilCrash(t *testing.T, a *Agent, w *world, point string) {
	t.Helper()
	w.crashBefore = point
	defer func() {
		if r := recover(); r != errCrash {
			t.Fatalf("no crash at %q (recovered %v)", point, r)
		}
	}()
	_, _ = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
}

func TestRecoveryAfterACrashInEachPhaseLeavesTheSlotServing(t *testing.T) {
	type crash struct{ name, crashBefore, wantImage string }
	for _, strategy := range []struct {
		name    string
		crashes []crash
	}{
		{StrategyStopFirst, []crash{
			{"draining, before the new container is created", "Clone", "app:v1"},
			{"drained, new container created", "Stop", "app:v1"},
			{"old stopped", "Rename", "app:v1"},
			{"old renamed, new not", "Rename app-1-haroll-next", "app:v1"},
			{"both renamed, new not started", "Start", "app:v1"},
			{"new started, before the gate", "LeaveMaint", "app:v1"},
			{"gate passed, before restore", "SetWeight app/srv-app-1 7", "app:v2"},
		}},
		// The old container runs until the new one is proven, and HAProxy is
		// pointed at the new one's address.
		{StrategyStartFirst, []crash{
			{"draining, before the rename", "Rename", "app:v1"},
			{"renamed, new not created", "Clone", "app:v1"},
			{"new created", "Start", "app:v1"},
			{"new booted, before the address", "SetAddr", "app:v1"},
			{"address switched, before the gate", "LeaveMaint", "app:v1"},
			{"gate passed, before restore", "SetWeight app/srv-app-1 7", "app:v2"},
		}},
	} {
		for _, tc := range strategy.crashes {
			t.Run(strategy.name+"/"+tc.name, func(t *testing.T) {
				w := newWorld(t)
				slot := w.addSlot("app-1", 7)
				if strategy.name == StrategyStartFirst {
					w.startFirst()
				}
				a := newTestAgent(t, w, slot)
				redeployUntilCrash(t, a, w, tc.crashBefore)

				// The agent starts again over the same state_dir.
				b := newTestAgent(t, w, slot)
				b.cfg.StateDir = a.cfg.StateDir
				did, err := b.Recover(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if did == "" {
					t.Fatal("recovery found nothing to do")
				}
				w.mu.Lock()
				defer w.mu.Unlock()
				c := w.byName("app-1")
				if c == nil || !c.Running || c.Image != tc.wantImage {
					t.Fatalf("app-1: %+v, want %s running", c, tc.wantImage)
				}
				if len(w.ctrs) != 1 {
					t.Fatalf("%d containers, want 1", len(w.ctrs))
				}
				st := w.servers["app/srv-app-1"].stat
				if want := fmt.Sprintf("127.0.0.1:%d", c.Ports["8080/tcp"][0].HostPort); st.Weight != 7 || st.Addr != want {
					t.Fatalf("weight %d at %s, want 7 at %s", st.Weight, st.Addr, want)
				}
				if e, err := (Journal{dir: b.cfg.StateDir}).Read(); err != nil || e != nil {
					t.Fatalf("journal left: %+v, %v", e, err)
				}
				w.mu.Unlock()
				defer w.mu.Lock()
				if again, err := b.Recover(context.Background()); err != nil || again != "" {
					t.Fatalf("a second recovery did %q, %v", again, err)
				}
			})
		}
	}
}

func TestANewContainerCreatedButNotJournaledIsRemoved(t *testing.T) {
	// Under the `-haroll-next` name (created while draining), or under the
	// slot's name (after the swap).
	for _, crashBefore := range []string{"Stop", "Start"} {
		w := newWorld(t)
		slot := w.addSlot("app-1", 7)
		a := newTestAgent(t, w, slot)
		// Crash after the clone, with a journal that does not know the new ID.
		w.crashBefore = crashBefore
		func() {
			defer func() { _ = recover() }()
			_, _ = a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
		}()
		e, _ := (Journal{dir: a.cfg.StateDir}).Read()
		e.NewID = ""
		if err := (Journal{dir: a.cfg.StateDir}).Write(*e); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		if c := w.byName("app-1"); c.Image != "app:v1" || !c.Running || len(w.ctrs) != 1 {
			t.Fatalf("crash before %s: app-1 %+v, %d containers", crashBefore, c, len(w.ctrs))
		}
	}
}

func TestTheNextRedeployRecoversFirst(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	a := newTestAgent(t, w, slot)
	redeployUntilCrash(t, a, w, "Rename")
	var recovered bool
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		recovered = recovered || e.Phase == PhaseRecover
	})
	if err != nil || !recovered || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("recovered %v, %+v, %v", recovered, rep.Slots, err)
	}
}

// The old container of a finished slot is removed in the background; if that
// fails (or the process dies first), the leftovers file names it and the
// next recovery removes it.
func TestAnOldContainerLeftOverIsRemovedByTheNextRecovery(t *testing.T) {
	for _, startFirst := range []bool{false, true} {
		w := newWorld(t)
		slot := w.addSlot("app-1", 7)
		if startFirst {
			w.startFirst()
		}
		a := newTestAgent(t, w, slot)
		w.failing("Remove", errors.New("device or resource busy"))
		rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
		if err != nil || rep.Slots[0].Result != ResultReplaced {
			t.Fatalf("start-first %v: %v %+v: a failed removal must not fail the slot", startFirst, err, rep.Slots)
		}
		if ls, _ := readLeftovers(a.cfg.StateDir); len(ls) != 1 || len(w.ctrs) != 2 {
			t.Fatalf("start-first %v: leftovers %v, %d containers", startFirst, ls, len(w.ctrs))
		}
		w.failing("Remove", nil)
		if did, err := a.Recover(context.Background()); err != nil || !strings.Contains(did, "removed 1 old container") {
			t.Fatalf("start-first %v: recover: %q, %v", startFirst, did, err)
		}
		if ls, _ := readLeftovers(a.cfg.StateDir); len(ls) != 0 || len(w.ctrs) != 1 || w.byName("app-1").Image != "app:v2" {
			t.Fatalf("start-first %v: leftovers %v, containers %v", startFirst, ls, w.ctrs)
		}
	}
}

func TestACreateThatLandsAfterTheCrashIsRemovedByTheRecovery(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	a.settle = 300 * time.Millisecond
	redeployUntilCrash(t, a, w, "Clone")
	// The daemon finishes the create it was asked for after haroll died.
	landed := make(chan struct{})
	go func() {
		defer close(landed)
		time.Sleep(50 * time.Millisecond)
		_, _ = w.Clone(context.Background(), "app-1", "app:v2", "app-1"+nextSuffix)
	}()
	if _, err := a.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-landed
	if c := w.byName("app-1" + nextSuffix); c != nil {
		t.Fatalf("the late container %s is left over", c.Name)
	}
	if len(w.ctrs) != 3 {
		t.Fatalf("%d containers, want 3", len(w.ctrs))
	}
}

func TestAStaleNextContainerIsRemovedBeforeTheCreate(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	if _, err := w.Clone(context.Background(), "app-1", "app:v2", "app-1"+nextSuffix); err != nil {
		t.Fatal(err)
	}
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-1"}}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v, %v", rep, err)
	}
	if len(w.ctrs) != 3 {
		t.Fatalf("%d containers, want 3", len(w.ctrs))
	}
}

// A recovery that finishes a proven slot forward and cannot remove the old
// container records it in leftovers.json, so a later recovery removes it:
// started first, it still runs, with its network aliases.
func TestAFailedCleanupInRecoveryIsKeptForTheNextOne(t *testing.T) {
	for _, startFirst := range []bool{false, true} {
		w := newWorld(t)
		slot := w.addSlot("app-1", 7)
		if startFirst {
			w.startFirst()
		}
		a := newTestAgent(t, w, slot)
		oldID := w.byName("app-1").ID
		redeployUntilCrash(t, a, w, "SetWeight app/srv-app-1 7") // proven, not restored
		w.failing("Remove", errors.New("device or resource busy"))
		// The recovery tries the leftovers too, and says that one failed.
		did, err := a.Recover(context.Background())
		if !strings.Contains(did, "finished the replacement") || err == nil || !strings.Contains(err.Error(), "old container "+shortID(oldID)) {
			t.Fatalf("start-first %v: recover: %q, %v", startFirst, did, err)
		}
		ls, _ := readLeftovers(a.cfg.StateDir)
		if len(ls) != 1 || ls[0].ID != oldID {
			t.Fatalf("start-first %v: leftovers %v, want the old container %s: it leaks for good", startFirst, ls, shortID(oldID))
		}
		w.failing("Remove", nil)
		if did, err := a.Recover(context.Background()); err != nil || !strings.Contains(did, "removed 1 old container") {
			t.Fatalf("start-first %v: second recover: %q, %v", startFirst, did, err)
		}
		if len(w.ctrs) != 1 || w.byName("app-1").Image != "app:v2" {
			t.Fatalf("start-first %v: containers %v", startFirst, w.ctrs)
		}
	}
}

// Recovery of a slot whose new container had passed the gate does not
// trust where HAProxy points: after an HAProxy restart without a state file
// (the server back at its configured address, the old container's) or a
// reboot that gave the new container another address, it points HAProxy
// at the new container and proves it with fresh checks before the weight.
func TestRecoveryOfAProvenSlotChecksTheAddressFirst(t *testing.T) {
	for _, tc := range []struct {
		name       string
		startFirst bool
		after      func(w *world, newID string)
	}{
		{"haproxy restarted without a state file", true, func(w *world, _ string) { w.reload(w.pid + 1001) }},
		{"the new container got another address", false, func(w *world, newID string) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.nextPrt++
			w.ctrs[newID].Ports = map[string][]docker.PortBinding{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: w.nextPrt}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addSlot("app-1", 7)
			if tc.startFirst {
				w.startFirst()
			}
			a := newTestAgent(t, w, slot)
			redeployUntilCrash(t, a, w, "SetWeight app/srv-app-1 7") // proven, not restored
			e, _ := (Journal{dir: a.cfg.StateDir}).Read()
			if e == nil || !e.Proven {
				t.Fatalf("journal %+v: want a proven one", e)
			}
			tc.after(w, e.NewID)
			if _, err := a.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			c := w.byName("app-1")
			s := w.servers["app/srv-app-1"]
			want := fmt.Sprintf("127.0.0.1:%d", c.Ports["8080/tcp"][0].HostPort)
			if c.Image != "app:v2" || s.stat.Addr != want || s.stat.Weight != 7 || len(w.ctrs) != 1 {
				w.mu.Unlock()
				t.Fatalf("app-1 %s at %s; server at %s weight %d; %d containers: want app:v2 served at its own address at weight 7", c.Image, want, s.stat.Addr, s.stat.Weight, len(w.ctrs))
			}
			w.mu.Unlock()
			if st, _ := w.Server(context.Background(), "app", "srv-app-1"); st.Status != "UP" {
				t.Fatalf("server %s after the recovery", st.Status)
			}
		})
	}
}

// A new container proven before the crash that fails its checks after it is
// rolled back to the old one, which is still there.
func TestAProvenContainerThatFailsAfterTheCrashIsRolledBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	oldID := w.byName("app-1").ID
	redeployUntilCrash(t, a, w, "SetWeight app/srv-app-1 7")
	e, _ := (Journal{dir: a.cfg.StateDir}).Read()
	w.mu.Lock()
	w.ctrs[e.NewID].ImageID = "sha256:broken" // it answers no more
	w.mu.Unlock()
	did, err := a.Recover(context.Background())
	if err != nil || !strings.Contains(did, "rolled back") {
		t.Fatalf("recover: %q, %v", did, err)
	}
	assertRolledBack(t, w, oldID)
	if len(w.ctrs) != 1 {
		t.Fatalf("%d containers", len(w.ctrs))
	}
	if e, _ := (Journal{dir: a.cfg.StateDir}).Read(); e != nil {
		t.Fatalf("journal left: %+v", e)
	}
}

// An old container that cannot be removed stays in leftovers.json and is
// tried again by every recovery, but does not refuse later redeploys: it no
// longer gets traffic, and the slot's journal is clear.
func TestALeftoverThatCannotBeRemovedDoesNotBlockTheNextRedeploy(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	w.failing("Remove", errors.New("device or resource busy"))
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v1"}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("second redeploy: %v %+v: a leftover must not refuse it", err, rep.Slots)
	}
	if ls, _ := readLeftovers(a.cfg.StateDir); len(ls) != 2 {
		t.Fatalf("leftovers %v, want both old containers kept for a later recovery", ls)
	}
	w.failing("Remove", nil)
	if did, err := a.Recover(context.Background()); err != nil || !strings.Contains(did, "removed 2 old container") {
		t.Fatalf("recover: %q, %v", did, err)
	}
	if len(w.ctrs) != 1 || w.byName("app-1").Image != "app:v1" {
		t.Fatalf("containers %v", w.ctrs)
	}
}

// A proven slot whose server already serves the new container (the crash
// came after the restore) is not forced down by the recovery's fresh check
// when the backend cannot do without it; with another server serving, it is
// checked afresh.
func TestRecoveryDoesNotForceDownAServerTheBackendCannotDoWithout(t *testing.T) {
	for _, othersServe := range []bool{false, true} {
		w := newWorld(t)
		a := newTestAgent(t, w, w.addSlot("app-1", 7))
		redeployUntilCrash(t, a, w, "SetWeight app/srv-app-1 7")
		w.mu.Lock()
		w.servers["app/srv-app-1"].stat.Weight = 7 // the restore had landed
		if !othersServe {
			w.servers["app/other"].stat.Weight = 0
		}
		before := len(w.calls)
		w.mu.Unlock()
		if _, err := a.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		forced := slices.ContainsFunc(w.mutations()[before:], func(c string) bool { return strings.HasPrefix(c, "ForceHealthDown") })
		if forced != othersServe {
			t.Fatalf("others serve %v: forced health down %v: %v", othersServe, forced, w.mutations()[before:])
		}
		assertServes(t, a, w, "app:v2", 7, 1)
	}
}
