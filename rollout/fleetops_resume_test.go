package rollout

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A rollback's state (per-pair Images, no Image) reads back, and an
// interrupted `haroll rollout rollback` resumes (it was refused: "no image").
func TestAnInterruptedRollbackToEachSlotsImageIsResumable(t *testing.T) {
	o := newOpsFleet(t, 2, "a", "b")
	e := opsExecutor(o, newFakeLease(9))
	e.Image = ""
	e.Images = map[string]string{PairKey("h1", "a"): "app:v0", PairKey("h2", "b"): "app:v0"}
	e.StateFile = filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithCancel(context.Background())
	o.onCall = func(c call) { cancel() } // interrupted during its first step
	_, _ = e.Run(ctx, hostNames(2), nil, Strategy{Batch: Size{count: 1}})
	if _, err := ReadState(e.StateFile); err != nil {
		t.Errorf("the rollback's state cannot be read: %v", err)
	}
	if _, err := LoadResumable(e.StateFile, ""); err != nil {
		t.Errorf("the interrupted rollback cannot be resumed: %v", err)
	}
}

func rentry(seq uint64, slot, before, after, rid string, token uint64) *agentpb.HistoryEntry {
	return &agentpb.HistoryEntry{Seq: seq, Slot: slot, ImageBefore: before, ImageAfter: after, RolloutId: rid,
		FenceToken: token, Kind: KindRollout, ResultCode: agentpb.SlotResult_SLOT_RESULT_REPLACED,
		RequestedImage: after, Start: timestamppb.New(time.Now())}
}

// The on_failure (or canary) rollback's undo is recorded by the agents under
// the rollout's id but as kind rollback: PlanRollback must not take it for the
// rollout's replacement (it would put the failed image back), and leaves a
// slot already back on its old image alone.
func TestPlanRollbackLeavesSlotsAnOnFailureRollbackPutBack(t *testing.T) {
	hist := []HostHistory{
		// h1, batch 1: replaced v1 -> v2, then on_failure rollback v2 -> v1 (same rollout r5)
		{Host: "h1", Entries: []*agentpb.HistoryEntry{rentry(2, "a", "app:v2", "app:v1", "r5", 5), rentry(1, "a", "app:v1", "app:v2", "r5", 5)}},
		// h2, batch 2: replaced fine, no rollback needed
		{Host: "h2", Entries: []*agentpb.HistoryEntry{rentry(1, "a", "app:v1", "app:v2", "r5", 5)}},
	}
	p, err := PlanRollback(hist)
	if err != nil {
		t.Fatal(err)
	}
	if img, ok := p.Images["h1/a"]; ok {
		t.Errorf("h1/a is already back on app:v1, but the rollback plan sends it to %s", img)
	}
}

// A resumed rollout keeps its id under a new token (the resume's lock):
// PlanRollback undoes the pairs of both runs.
func TestPlanRollbackUndoesAResumedRolloutWhole(t *testing.T) {
	hist := []HostHistory{
		{Host: "h1", Entries: []*agentpb.HistoryEntry{rentry(1, "a", "app:v1", "app:v2", "r5", 5)}}, // before the crash
		{Host: "h2", Entries: []*agentpb.HistoryEntry{rentry(1, "a", "app:v1", "app:v2", "r5", 6)}}, // the resume: same id, new token
	}
	p, err := PlanRollback(hist)
	if err != nil {
		t.Fatal(err)
	}
	if p.Images["h1/a"] != "app:v1" || p.Images["h2/a"] != "app:v1" {
		t.Errorf("plan %v: want both h1/a and h2/a back on app:v1 (one rollout, resumed once)", p.Images)
	}
}

// A lock lost during the on_failure rollback leaves the state resumable
// (it was marked complete, half rolled back).
func TestALockLostDuringTheOnFailureRollbackLeavesTheStateResumable(t *testing.T) {
	o := newOpsFleet(t, 4, "a", "b")
	o.host("h3").fail["a"] = true
	lease := newFakeLease(5)
	e := opsExecutor(o, lease)
	e.OnFailure = OnFailureRollback
	e.StateFile = filepath.Join(t.TempDir(), "state.json")
	var once bool
	o.onCall = func(c call) {
		// the first on_failure rollback request: the lock is taken away
		if c.host == "h1" && !once {
			if _, reqs := o.requests(); len(reqs) > 0 && reqs[len(reqs)-1].GetImage() == "app:v1" {
				once = true
				lease.lost.Store(true)
			}
		}
	}
	_, err := e.Run(context.Background(), hostNames(4), nil, Strategy{Batch: Size{count: 2}})
	if !errors.Is(err, ErrLockLost) {
		t.Errorf("error %v, want ErrLockLost", err)
	}
	st, rerr := ReadState(e.StateFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if st.Complete {
		t.Errorf("state marked complete (%s: %s) by a coordinator that lost its lock halfway through its on_failure rollback", st.Outcome, st.Stopped)
	}
}

// A resume releases the claims of every host of the rollout, the ones the
// first run finished too (they stayed claimed for claim_ttl).
func TestAResumeReleasesEveryClaimOfTheRollout(t *testing.T) {
	o := newOpsFleet(t, 4, "a")
	e := opsExecutor(o, newFakeLease(5))
	e.StateFile = filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithCancel(context.Background())
	o.onCall = func(c call) {
		if c.host == "h3" {
			cancel() // the coordinator dies during batch 2
		}
	}
	_, _ = e.Run(ctx, hostNames(4), nil, Strategy{Batch: Size{count: 2}})
	o.onCall = nil
	st, err := LoadResumable(e.StateFile, "")
	if err != nil {
		t.Fatal(err)
	}
	e2 := opsExecutor(o, newFakeLease(6))
	e2.StateFile = e.StateFile
	if _, err := e2.Resume(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	for _, h := range hostNames(4) {
		released := false
		for _, c := range o.claims[h] {
			released = released || c.GetRelease()
		}
		if !released {
			t.Errorf("host %s: its claim was never released once the resumed rollout ended: %v", h, o.claims[h])
		}
	}
}

// A coordinator that dies during its on_failure rollback: the resume
// finishes the rollback, every pair the rollout replaced back on app:v1.
func TestAResumeFinishesAnInterruptedOnFailureRollback(t *testing.T) {
	// The coordinator dies at its first on_failure rollback request.
	resumeAnOnFailureRollbackCut(t, Size{}, func(call) bool { return true })
}

// As above, dying after the rollback put h1 back (rollback.batch 1): the
// resume goes on with the rollback over every batch (it rolled back batch 1
// only, leaving h4 of batch 2 on the new image).
func TestAResumeFinishesAnOnFailureRollbackCutAfterItsFirstHost(t *testing.T) {
	// h1 is back; the coordinator dies at the next host.
	resumeAnOnFailureRollbackCut(t, Size{count: 1}, func(c call) bool { return c.host != "h1" })
}

// resumeAnOnFailureRollbackCut runs a 4-host rollout whose batch 2 fails
// (h3's slot a) with on_failure: rollback, rollback.batch batch, cancels it
// at the first rollback request cut says so of, resumes it under a new
// lease, and checks that every pair the rollout replaced runs app:v1.
func resumeAnOnFailureRollbackCut(t *testing.T, batch Size, cut func(call) bool) {
	t.Helper()
	o := newOpsFleet(t, 4, "a", "b")
	o.host("h3").fail["a"] = true // batch 2's first host fails; h4 (batch 2) is replaced
	e := opsExecutor(o, newFakeLease(5))
	e.OnFailure, e.RollbackBatch = OnFailureRollback, batch
	e.StateFile = filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithCancel(context.Background())
	o.onCall = func(c call) {
		if _, reqs := o.requests(); len(reqs) > 0 && reqs[len(reqs)-1].GetImage() == "app:v1" && cut(c) {
			cancel()
		}
	}
	_, _ = e.Run(ctx, hostNames(4), nil, Strategy{Batch: Size{count: 2}})
	o.onCall = nil
	st, err := LoadResumable(e.StateFile, "")
	if err != nil {
		t.Fatal(err)
	}
	e2 := opsExecutor(o, newFakeLease(6))
	e2.OnFailure, e2.RollbackBatch = st.OnFailure, batch
	e2.StateFile = e.StateFile
	res, _ := e2.Resume(context.Background(), st)
	for _, h := range []string{"h1", "h2", "h4"} {
		for _, s := range []string{"a", "b"} {
			if img := o.host(h).imageOf(s); img != "app:v1" {
				t.Errorf("after the resume, host %s slot %s runs %s, want app:v1 (stopped: %s)", h, s, img, res.Stopped)
			}
		}
	}
}

// With store: file, a coordinator whose lock was released by hand writes
// nothing more: its in-flight records, and a compaction they trigger, do
// not overwrite the state of the rollout that took the lock since.
func TestAFileStoreCoordinatorThatLostItsLockDoesNotOverwriteTheNextOnesState(t *testing.T) {
	setCompaction(t, 1)
	o := newOpsFleet(t, 2, "a")
	path := filepath.Join(t.TempDir(), "state.json")
	store := NewFileStore(path)
	lease, err := store.Acquire(context.Background(), LockInfo{RolloutID: "rA", Holder: "a@m", Kind: KindRollout}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := opsExecutor(o, lease)
	e.Store = store
	var once atomic.Bool
	o.onCall = func(c call) {
		if once.Swap(true) {
			return
		}
		// lock release, then rollout B takes the lock and begins its state
		if _, err := store.ForceRelease(context.Background()); err != nil {
			t.Error(err)
		}
		bl, err := store.Acquire(context.Background(), LockInfo{RolloutID: "rB", Holder: "b@m", Kind: KindRollout}, 0)
		if err != nil {
			t.Error(err)
			return
		}
		_ = bl
		if err := WriteState(path, &State{Version: stateVersion, Image: "app:v9", Hosts: []string{"h1", "h2"}, Slots: []string{"a"},
			Plan: Plan{Batches: []Batch{{Hosts: []string{"h1", "h2"}, Steps: []Step{{Slot: "a", Hosts: []string{"h1", "h2"}}}}}},
			Done: []PairResult{}, RolloutID: "rB"}); err != nil {
			t.Error(err)
		}
	}
	_, _ = e.Run(context.Background(), hostNames(2), nil, Strategy{Batch: Size{count: 2}})
	st, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Image != "app:v9" || st.RolloutID != "rB" {
		t.Errorf("the state of rollout rB (app:v9) was overwritten by rA, which lost the lock: it records %s of %s", st.RolloutID, st.Image)
	}
}
