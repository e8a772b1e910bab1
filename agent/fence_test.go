package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/docker"
)

// reopen is a restart of a's process: a new Agent over the same state
// directory and world.
func reopen(t *testing.T, w *world, a *Agent) *Agent {
	t.Helper()
	b := New(a.cfg, w, w, a.log)
	b.poll, b.settle, b.probe = a.poll, a.settle, a.probe
	return b
}

func fence(token uint64, id string) *Fence {
	return &Fence{Token: token, RolloutID: id, Holder: "alice@ops", Message: "release 42", Kind: "rollout",
		Since: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
}

func TestAFenceLowerThanTheHighestSeenIsRefusedAnEqualOrHigherOneAdmitted(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	if err := a.CheckFence(*fence(5, "r5")); err != nil {
		t.Fatalf("first fence: %v", err)
	}
	if err := a.CheckFence(*fence(5, "r5")); err != nil {
		t.Fatalf("the same token again: %v", err)
	}
	err := a.CheckFence(*fence(4, "r4"))
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("lower token: %v, want ErrFenced", err)
	}
	want := "fenced: rollout r4 (token 4) is older than rollout r5 (token 5, held by alice@ops) this host has seen: its coordinator lost the fleet lock"
	if err.Error() != want {
		t.Fatalf("error\n%q\nwant\n%q", err, want)
	}
	if err := a.CheckFence(*fence(7, "r7")); err != nil {
		t.Fatalf("higher token: %v", err)
	}
	st, err := a.FenceState()
	if err != nil || st.Token != 7 || st.RolloutID != "r7" || st.Claim == nil || st.Claim.Fence.RolloutID != "r7" {
		t.Fatalf("state %+v, %v: want token 7 of r7, claimed by r7", st, err)
	}
	if err := a.CheckFence(*fence(5, "r5")); !errors.Is(err, ErrFenced) {
		t.Fatalf("the first rollout after a later one: %v, want ErrFenced", err)
	}
}

func TestTheHighestFenceSurvivesARestartOfTheAgent(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	if err := a.CheckFence(*fence(9, "r9")); err != nil {
		t.Fatal(err)
	}
	b := reopen(t, w, a)
	_, err := b.Redeploy(context.Background(), Request{Image: "app:v2", Fence: fence(8, "r8")}, nil)
	if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "rollout r8 (token 8) is older than rollout r9 (token 9") {
		t.Fatalf("redeploy of a stale rollout after a restart: %v, want ErrFenced naming both", err)
	}
	if m := w.mutations(); len(m) > 0 {
		t.Fatalf("a fenced redeploy changed %v", m)
	}
	if _, err := b.Promote(context.Background(), nil, "r8", fence(8, "r8")); !errors.Is(err, ErrFenced) {
		t.Fatalf("promote of a stale rollout: %v, want ErrFenced", err)
	}
}

func TestAHigherFenceIsOnDiskBeforeTheRedeployTouchesASlot(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	var seen uint64
	w.afterCall = func(string) {
		if seen != 0 {
			return
		}
		b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, fenceFile))
		var st FenceState
		if err == nil && json.Unmarshal(b, &st) == nil {
			seen = st.Token
		}
		if seen == 0 {
			seen = 1 // read once, at the first change
		}
	}
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Fence: fence(12, "r12")}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v, %v", rep, err)
	}
	if seen != 12 {
		t.Fatalf("at the first change the fence file held token %d, want 12", seen)
	}
}

func TestAClaimedHostRefusesAPersonsRedeployUntilTheClaimEnds(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	f := fence(3, "r3")
	f.ClaimTTL = 10 * time.Minute
	if err := a.CheckFence(*f); err != nil {
		t.Fatal(err)
	}
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Origin: "redeploy by bob"}, nil)
	want := `host belongs to rollout r3 held by alice@ops since 2026-12-02T09:00:00Z: "release 42"; wait for it to end (haroll rollout lock status), or pass --break-claim`
	if !errors.Is(err, ErrClaimed) || err.Error() != want {
		t.Fatalf("a person's redeploy of a claimed host: %v\nwant %q", err, want)
	}
	if m := w.mutations(); len(m) > 0 {
		t.Fatalf("a refused redeploy changed %v", m)
	}
	// A restart keeps the claim.
	a = reopen(t, w, a)
	a.now = func() time.Time { return now }
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); !errors.Is(err, ErrClaimed) {
		t.Fatalf("after a restart: %v, want ErrClaimed", err)
	}
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", BreakClaim: true}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("--break-claim: %+v, %v", rep, err)
	}
	// The claim expires claim_ttl after the request that made it.
	now = now.Add(10*time.Minute - time.Second)
	if st, _ := a.FenceState(); st.Claim == nil || !st.Claim.Expires.Equal(time.Date(2026, 12, 2, 10, 10, 0, 0, time.UTC)) {
		t.Fatalf("claim %+v: want one until 10:10", st.Claim)
	}
	now = now.Add(time.Second)
	if st, _ := a.FenceState(); st.Claim != nil || st.Token != 3 {
		t.Fatalf("state %+v: want the claim expired, the token kept", st)
	}
	rep, err = a.Redeploy(context.Background(), Request{Image: "app:v1"}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("after the claim expired: %+v, %v", rep, err)
	}
}

func TestAClaimWithoutTTLLastsAnHour(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	st, err := a.Claim(ClaimRequest{Fence: *fence(2, "r2")})
	if err != nil || st.Claim == nil || !st.Claim.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("claim %+v, %v: want one for an hour", st.Claim, err)
	}
}

func TestClaimReleaseAndForceRelease(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	if _, err := a.Claim(ClaimRequest{}); !errors.Is(err, ErrInvalidFence) {
		t.Fatalf("a claim without a token: %v, want ErrInvalidFence", err)
	}
	if st, err := a.Claim(ClaimRequest{Fence: *fence(4, "r4")}); err != nil || st.Claim == nil || st.Token != 4 {
		t.Fatalf("claim: %+v, %v", st, err)
	}
	if _, err := a.Claim(ClaimRequest{Fence: *fence(3, "r3"), Release: true}); !errors.Is(err, ErrFenced) {
		t.Fatalf("release by an older rollout: %v, want ErrFenced", err)
	}
	if st, _ := a.FenceState(); st.Claim == nil {
		t.Fatal("a refused release ended the claim")
	}
	if st, err := a.Claim(ClaimRequest{Fence: *fence(4, "r4"), Release: true}); err != nil || st.Claim != nil || st.Token != 4 {
		t.Fatalf("release: %+v, %v: want no claim, token 4", st, err)
	}
	// A fenced redeploy claims the host again; force_release ends that
	// claim, fence or not, and never lowers the token.
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Fence: fence(6, "r6")}, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.FenceState(); st.Claim == nil || st.Claim.Fence.RolloutID != "r6" {
		t.Fatalf("claim after a fenced redeploy: %+v", st.Claim)
	}
	if st, err := a.Claim(ClaimRequest{Fence: Fence{Token: 1}, ForceRelease: true}); err != nil || st.Claim != nil || st.Token != 6 {
		t.Fatalf("force release: %+v, %v: want no claim, token 6", st, err)
	}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v1"}, nil); err != nil {
		t.Fatalf("a person's redeploy after the claim was released: %v", err)
	}
}

// claimDuringPull returns events for a Redeploy that pulls: at the pull's
// first progress report, while the pull still runs, f claims the host.
// claimed says whether it did.
func claimDuringPull(t *testing.T, a *Agent, f *Fence) (events func(Event), claimed func() bool) {
	t.Helper()
	a.pullEvery = 10 * time.Millisecond
	var once sync.Once
	var done atomic.Bool
	return func(e Event) {
		if e.Phase != PhasePull || !e.Progress {
			return
		}
		once.Do(func() {
			if _, err := a.Claim(ClaimRequest{Fence: *f}); err != nil {
				t.Errorf("claim of %s during the pull: %v", f.RolloutID, err)
			}
			done.Store(true)
		})
	}, done.Load
}

func TestAFenceRaisedDuringThePullStopsTheStaleRedeployBeforeAnySlot(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7), w.addSlot("app-2", 3))
	w.pullable("app:v3", &fakePull{every: 50 * time.Millisecond, steps: []docker.PullProgress{{Downloaded: 1, Size: 2}, {Downloaded: 2, Size: 2}}})
	// Rollout r6 took the fleet lock; its preflight claims the host while
	// r5's redeploy, admitted before, still pulls.
	events, claimed := claimDuringPull(t, a, fence(6, "r6"))
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v3", Fence: fence(5, "r5")}, events)
	if !claimed() {
		t.Fatal("no progress of the pull was reported, so r6 never claimed the host during it")
	}
	want := "fenced: rollout r5 (token 5) is older than rollout r6 (token 6, held by alice@ops) this host has seen: its coordinator lost the fleet lock; " +
		"the later rollout reached the host while this request waited for the host lock or pulled app:v3; nothing was changed"
	if !errors.Is(err, ErrFenced) || err.Error() != want {
		t.Fatalf("redeploy of r5 after r6 claimed the host during its pull: %v\nwant %q", err, want)
	}
	if code := status.Code(toStatus(err)); code != codes.Aborted {
		t.Errorf("over gRPC: %s, want ABORTED", code)
	}
	if len(rep.Slots) != 0 {
		t.Errorf("report %+v: want no slot (a refusal)", rep.Slots)
	}
	if m := w.mutations(); len(m) > 0 {
		t.Errorf("a fenced redeploy changed %v", m)
	}
	if h, err := a.History(HistoryQuery{}); err != nil || len(h) != 0 {
		t.Errorf("history %+v, %v: want nothing recorded", h, err)
	}
	if st, _ := a.FenceState(); st.Token != 6 || st.Claim == nil || st.Claim.Fence.RolloutID != "r6" {
		t.Errorf("fence state %+v: want token 6, claimed by r6", st)
	}
}

func TestTheSameRolloutRenewingItsClaimDuringThePullDoesNotStopItsRedeploy(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	w.pullable("app:v3", &fakePull{every: 50 * time.Millisecond, steps: []docker.PullProgress{{Downloaded: 1, Size: 2}, {Downloaded: 2, Size: 2}}})
	events, claimed := claimDuringPull(t, a, fence(5, "r5"))
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v3", Fence: fence(5, "r5")}, events)
	if !claimed() {
		t.Fatal("no progress of the pull was reported, so r5 never renewed its claim during it")
	}
	if err != nil || len(rep.Slots) != 1 || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v, %v: want app-1 replaced", rep.Slots, err)
	}
}

func TestAFenceRaisedDuringASlotStopsTheStaleRedeployBeforeTheNext(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7), w.addSlot("app-2", 3), w.addSlot("app-3", 5))
	var once sync.Once
	events := func(e Event) {
		// app-1 is proven and gets its weight back: r6's preflight claims
		// the host now, before app-2 starts.
		if e.Slot == "app-1" && e.Phase == PhaseRestore {
			once.Do(func() {
				if _, err := a.Claim(ClaimRequest{Fence: *fence(6, "r6")}); err != nil {
					t.Errorf("claim of r6: %v", err)
				}
			})
		}
	}
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Fence: fence(5, "r5")}, events)
	want := "slot app-2: fenced: rollout r5 (token 5) is older than rollout r6 (token 6, held by alice@ops) this host has seen: its coordinator lost the fleet lock; " +
		"replaced before it: app-1; not run: app-2, app-3"
	if !errors.Is(err, ErrFenced) || err.Error() != want {
		t.Fatalf("redeploy of r5 after r6 claimed the host during app-1: %v\nwant %q", err, want)
	}
	got := map[string]SlotReport{}
	for _, s := range rep.Slots {
		got[s.Slot] = s
	}
	if len(rep.Slots) != 3 || got["app-1"].Result != ResultReplaced || got["app-1"].Err != "" {
		t.Fatalf("report %+v: want app-1 replaced", rep.Slots)
	}
	for _, s := range []string{"app-2", "app-3"} {
		if got[s].Result != ResultNotRun || got[s].Err != want {
			t.Errorf("slot %s: %+v: want not_run with the fence's error", s, got[s])
		}
	}
	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if want := map[string]string{"app-1": "app:v2", "app-2": "app:v1", "app-3": "app:v1"}[s.Slot]; s.Image != want {
			t.Errorf("slot %s runs %s, want %s", s.Slot, s.Image, want)
		}
	}
	if h, err := a.History(HistoryQuery{}); err != nil || len(h) != 1 || h[0].Slot != "app-1" {
		t.Errorf("history %+v, %v: want app-1's replacement only", h, err)
	}
}
