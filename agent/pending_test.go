package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/runtime"
)

func TestStatusShowsTheWedgedSlotAndTheLastRecoveryError(t *testing.T) {
	w := newWorld(t)
	a, _ := wedgeByRemovingTheOld(t, w, threeSlots(t, w)...)
	slots, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range slots {
		if st.Slot != "app-1" {
			if st.Pending != nil {
				t.Errorf("%s: pending %+v, want none", st.Slot, st.Pending)
			}
			continue
		}
		p := st.Pending
		if p == nil || !p.Wedged || p.Image != "app:broken" || !strings.Contains(p.Error, "is gone") || p.FailedAt.IsZero() {
			t.Fatalf("app-1: pending %+v, want wedged by app:broken, with the recovery's error", p)
		}
	}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-1"}}, nil); err != nil {
		t.Fatal(err)
	}
	slots, _ = a.Status(context.Background())
	if slots[0].Pending != nil {
		t.Fatalf("app-1 after the take-over: pending %+v", slots[0].Pending)
	}
}

func TestPendingSaysWhatIsThereAndWhatRecoverWouldDoAndChangesNothing(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	if p, err := a.Pending(context.Background()); err != nil || p.Journal != nil {
		t.Fatalf("nothing pending: %+v, %v", p, err)
	}
	a, _ = wedgeByRemovingTheOld(t, w, a.cfg.Slots...)
	before := len(w.mutations())
	p, err := a.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(w.mutations()); n != before {
		t.Fatalf("Pending changed something: %v", w.mutations()[before:])
	}
	if p.Journal == nil || p.Journal.Slot != "app-1" || p.Journal.Image != "app:broken" || p.Journal.Failure == "" {
		t.Fatalf("journal %+v", p.Journal)
	}
	if p.Old == nil || p.Old.State != "gone" || p.New == nil || p.New.State != "exited" || p.New.Name != "app-1" || p.New.Image != "app:broken" {
		t.Fatalf("old %+v, new %+v: want the old one gone, the new one exited", p.Old, p.New)
	}
	if p.Server == nil || p.Server.Admin != "maint" || p.Server.Weight != 7 || p.Server.Addr == "" {
		t.Fatalf("server %+v, want in maintenance at weight 7", p.Server)
	}
	if !strings.Contains(p.Recover, "cannot roll back") || len(p.Forward) != 2 ||
		!strings.Contains(p.Forward[0], "haroll redeploy --slot app-1") || !strings.Contains(p.Forward[1], "haroll recover --abandon") {
		t.Fatalf("recover %q, forward %q", p.Recover, p.Forward)
	}
}

func TestAbandonLeavesTheServerInMaintenanceForgetsTheJournalAndSaysWhatRemains(t *testing.T) {
	w := newWorld(t)
	a, _ := wedgeByRemovingTheOld(t, w, w.addSlot("app-1", 7))
	// The agent restarted with HAProxy, which forgot the maintenance: the
	// abandon must put it back before it forgets the journal.
	w.restartHAProxy(map[string]int{"srv-app-1": 7})
	ab, err := a.Abandon(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := (Journal{dir: a.cfg.StateDir}).Read(); err != nil || e != nil {
		t.Fatalf("journal left: %+v, %v", e, err)
	}
	w.mu.Lock()
	srv, kept := w.servers["app/srv-app-1"], w.byName("app-1")
	if srv.admin.State != "maint" || kept == nil || kept.Running {
		w.mu.Unlock()
		t.Fatalf("server %s, container %+v: want maint, and the new container kept, stopped", srv.admin.State, kept)
	}
	w.mu.Unlock()
	text := strings.Join(ab.Next, "\n")
	for _, want := range []string{"app/srv-app-1 is in maintenance", "weight 7", shortID(kept.ID), "exited",
		"set server app/srv-app-1 state ready", "set server app/srv-app-1 weight 7", "haroll redeploy --slot app-1"} {
		if !strings.Contains(text, want) {
			t.Errorf("abandon's next steps do not say %q:\n%s", want, text)
		}
	}
	if _, err := a.Abandon(context.Background(), "test"); !errors.Is(err, ErrNothingPending) {
		t.Fatalf("second abandon: %v, want ErrNothingPending", err)
	}
	// Nothing is wedged any more: a redeploy of the slot is refused for
	// the maintenance only, as for any server in maintenance.
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "maintenance") {
		t.Fatalf("redeploy after the abandon: %v", err)
	}
}

func TestAbandonIsRefusedWhenTheServerCannotBeTakenOutOfSelection(t *testing.T) {
	w := newWorld(t)
	a, _ := wedgeByRemovingTheOld(t, w, w.addSlot("app-1", 7))
	w.failing("SetState", errors.New("permission denied"))
	if _, err := a.Abandon(context.Background(), "test"); err == nil || !strings.Contains(err.Error(), "not abandoned") {
		t.Fatalf("abandon while HAProxy refuses: %v", err)
	}
	if e, _ := (Journal{dir: a.cfg.StateDir}).Read(); e == nil {
		t.Fatal("the journal was forgotten though the server could not be taken out of selection")
	}
}

func TestTheWedgedSlotIsShownOverGRPCAndARedeployOfAnotherSlotIsAFailedPrecondition(t *testing.T) {
	w := newWorld(t)
	a, _ := wedgeByRemovingTheOld(t, w, threeSlots(t, w)...)
	client, _ := serve(t, a, context.Background())
	st, err := client.Status(context.Background(), &agentpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	slots := StatusFromPB(st.GetSlots())
	if p := slots[0].Pending; p == nil || !p.Wedged || p.Image != "app:broken" || !strings.Contains(p.Error, "is gone") || p.FailedAt.IsZero() {
		t.Fatalf("app-1 over gRPC: pending %+v", p)
	}
	if slots[1].Pending != nil {
		t.Fatalf("app-2 over gRPC: pending %+v", slots[1].Pending)
	}
	stream, err := client.Redeploy(context.Background(), &agentpb.RedeployRequest{Image: "app:v2", Slots: []string{"app-2"}})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "slot app-1") {
		t.Fatalf("redeploy of app-2 while app-1 is wedged: %v, want FailedPrecondition naming app-1", err)
	}
}

// Abandoning a proven replacement in drain mode says to give the state back
// (the drain left the weight alone): a weight alone would leave it DRAIN.
func TestAbandonOfAProvenDrainModeReplacementSaysToGiveTheStateBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Drain.Mode = DrainState
	redeployUntilCrash(t, a, w, "SetState app/srv-app-1 ready") // proven, not restored
	ab, err := a.Abandon(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(ab.Next, "\n"); !strings.Contains(text, "set server app/srv-app-1 state ready") {
		t.Fatalf("abandon's next steps do not give the state back:\n%s", text)
	}
}

// A recovery that fails only because HAProxy does not answer leaves the
// slot pending, not wedged: the next recovery is expected to settle it.
func TestARecoveryThatFailsOnAnOutageLeavesTheSlotPendingNotWedged(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.grace = 20 * time.Millisecond
	redeployUntilCrash(t, a, w, "Stop") // drained, new container created
	w.setDown(&w.haproxyDown, runtime.ErrUnreachable)
	if _, err := a.Recover(context.Background()); err == nil {
		t.Fatal("a recovery with HAProxy gone succeeded")
	}
	w.setDown(&w.haproxyDown, nil)
	slots, _ := a.Status(context.Background())
	if p := slots[0].Pending; p == nil || p.Wedged {
		t.Fatalf("pending %+v: want pending, not wedged", p)
	}
	if _, err := a.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
}
