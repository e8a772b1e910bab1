package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

// fakeLease is a held fleet lock that a test can take away.
type fakeLease struct {
	info   LockInfo
	lost   atomic.Bool
	checks atomic.Int32
}

func (l *fakeLease) Info() LockInfo { return l.info }
func (l *fakeLease) Check(context.Context) error {
	l.checks.Add(1)
	if l.lost.Load() {
		return fmt.Errorf("%w: released by `haroll rollout lock release`", ErrLockLost)
	}
	return nil
}
func (l *fakeLease) Release(context.Context) error { return nil }

func newFakeLease(token uint64) *fakeLease {
	return &fakeLease{info: LockInfo{RolloutID: fmt.Sprintf("r%d", token), Token: token, Holder: "ops@ci", Kind: KindRollout, Since: time.Now()}}
}

// opsFleet wraps a fakeFleet's connections with what fleet operations ask
// (FleetAgent, PromoteFenced) and records every request.
type opsFleet struct {
	*fakeFleet
	mu       sync.Mutex
	reqs     []*agentpb.RedeployRequest
	reqHost  []string
	claims   map[string][]*agentpb.ClaimRequest
	pulls    map[string][]string
	missing  map[string]bool // host -> the image cannot be got there
	promoted map[string]*agentpb.Fence
}

func newOpsFleet(t *testing.T, n int, slots ...string) *opsFleet {
	return &opsFleet{fakeFleet: newFleet(t, n, slots...), claims: map[string][]*agentpb.ClaimRequest{},
		pulls: map[string][]string{}, missing: map[string]bool{}, promoted: map[string]*agentpb.Fence{}}
}

func (o *opsFleet) dial(ctx context.Context, h string) (Agent, error) {
	a, err := o.fakeFleet.dial(ctx, h)
	if err != nil {
		return nil, err
	}
	return &opsConn{fakeConn: a.(*fakeConn), o: o}, nil
}

func (o *opsFleet) requests() ([]string, []*agentpb.RedeployRequest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.reqHost), slices.Clone(o.reqs)
}

type opsConn struct {
	*fakeConn
	o *opsFleet
}

func (c *opsConn) Redeploy(ctx context.Context, req *agentpb.RedeployRequest, onPhase func(*agentpb.PhaseEvent)) (*agentpb.Report, error) {
	c.o.mu.Lock()
	c.o.reqs = append(c.o.reqs, req)
	c.o.reqHost = append(c.o.reqHost, c.host)
	c.o.mu.Unlock()
	return c.fakeConn.Redeploy(ctx, req, onPhase)
}

func (c *opsConn) Pull(_ context.Context, image string, _ *agentpb.Fence, _ string, _ func(*agentpb.PullProgress)) (*agentpb.PullProgress, error) {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	c.o.pulls[c.host] = append(c.o.pulls[c.host], image)
	if c.o.missing[c.host] {
		return nil, fmt.Errorf("pull access denied for %s, repository does not exist", image)
	}
	return &agentpb.PullProgress{Done: true, Digest: "sha256:1"}, nil
}

func (c *opsConn) Claim(_ context.Context, req *agentpb.ClaimRequest) (*agentpb.ClaimResponse, error) {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	c.o.claims[c.host] = append(c.o.claims[c.host], req)
	return &agentpb.ClaimResponse{Claim: req.GetFence(), FenceToken: req.GetFence().GetToken()}, nil
}

func (c *opsConn) History(context.Context, *agentpb.HistoryRequest) (*agentpb.HistoryResponse, error) {
	return &agentpb.HistoryResponse{Hostname: c.host}, nil
}

func (c *opsConn) PromoteFenced(ctx context.Context, origin string, fence *agentpb.Fence) error {
	c.o.mu.Lock()
	c.o.promoted[c.host] = fence
	c.o.mu.Unlock()
	return c.fakeConn.Promote(ctx, origin)
}

func opsExecutor(o *opsFleet, lease Lease) *Executor {
	return &Executor{Dial: o.dial, Image: "app:v2", Origin: "test", Lease: lease, ConnectTimeout: time.Second, StepTimeout: 5 * time.Second}
}

// Every request of a rollout under a lease carries its fence; every host is
// claimed at the preflight and released once the rollout ended.
func TestALeasedRolloutFencesEveryRequestAndClaimsItsHosts(t *testing.T) {
	o := newOpsFleet(t, 4, "a", "b")
	lease := newFakeLease(42)
	e := opsExecutor(o, lease)
	if _, err := e.Run(context.Background(), hostNames(4), nil, Strategy{Batch: Size{count: 2}}); err != nil {
		t.Fatal(err)
	}
	hosts, reqs := o.requests()
	if len(reqs) != 8 {
		t.Fatalf("%d redeploys, want 8", len(reqs))
	}
	for i, r := range reqs {
		if r.GetFence().GetToken() != 42 || r.GetFence().GetRolloutId() != "r42" || r.GetFence().GetHolder() != "ops@ci" {
			t.Errorf("request %d to %s: fence %v, want token 42 of r42 held by ops@ci", i, hosts[i], r.GetFence())
		}
	}
	for _, h := range hostNames(4) {
		c := o.claims[h]
		if len(c) != 2 || c[0].GetRelease() || !c[1].GetRelease() || c[0].GetFence().GetToken() != 42 {
			t.Errorf("host %s: claims %v, want a claim at the preflight and a release at the end, token 42", h, c)
		}
	}
	// 2 batches of 2 steps: checked before each of the 4 steps.
	if n := lease.checks.Load(); n != 4 {
		t.Errorf("lease checked %d times, want 4 (before every step)", n)
	}
}

// A coordinator whose lock is lost stops before its next step: nothing more
// is asked, the state stays resumable, and the claims are left to the next
// holder.
func TestALostLeaseStopsTheRolloutBeforeItsNextStep(t *testing.T) {
	o := newOpsFleet(t, 4, "a", "b")
	lease := newFakeLease(7)
	e := opsExecutor(o, lease)
	e.StateFile = filepath.Join(t.TempDir(), "state.json")
	o.onCall = func(c call) {
		if c.host == "h1" && c.slot == "a" {
			lease.lost.Store(true) // released by hand during the first step
		}
	}
	res, err := e.Run(context.Background(), hostNames(4), nil, Strategy{Batch: Size{count: 2}})
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("error %v, want ErrLockLost", err)
	}
	if _, reqs := o.requests(); len(reqs) != 2 {
		t.Errorf("%d redeploys, want 2: only the step that was under way when the lock was lost", len(reqs))
	}
	if !strings.Contains(res.Stopped, "fleet lock was lost") {
		t.Errorf("stopped %q, want the lost lock", res.Stopped)
	}
	st, err := ReadState(e.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Complete {
		t.Error("the state is marked complete: a resume under the next lock could not finish it")
	}
	if st.Token != 7 || st.RolloutID != "r7" {
		t.Errorf("state records token %d rollout %q, want 7 r7", st.Token, st.RolloutID)
	}
	for _, h := range hostNames(4) {
		for _, c := range o.claims[h] {
			if c.GetRelease() {
				t.Errorf("host %s: claim released by a coordinator that lost its lock", h)
			}
		}
	}
}

// A host that cannot get the image stops the rollout before anything is
// drained: no Redeploy at all, every host named.
func TestAPrepullFailureStopsTheRolloutBeforeAnyDrain(t *testing.T) {
	o := newOpsFleet(t, 4, "a", "b")
	o.missing["h3"] = true
	e := opsExecutor(o, newFakeLease(1))
	e.Prepull = true
	res, err := e.Run(context.Background(), hostNames(4), nil, Strategy{Batch: Size{count: 2}})
	if !errors.Is(err, ErrPrepull) || !strings.Contains(err.Error(), "host h3") || !strings.Contains(err.Error(), "repository does not exist") {
		t.Fatalf("error %v, want ErrPrepull naming h3 and Docker's reason", err)
	}
	if _, reqs := o.requests(); len(reqs) != 0 {
		t.Errorf("%d redeploys after a failed prepull, want none", len(reqs))
	}
	for _, h := range hostNames(4) {
		if got := o.pulls[h]; !slices.Equal(got, []string{"app:v2"}) {
			t.Errorf("host %s pulled %v, want [app:v2]", h, got)
		}
	}
	if res.Totals.NotRun != 4 {
		t.Errorf("totals %+v, want 4 not run", res.Totals)
	}
	all, _ := o.openNow("h1")
	if all != 0 {
		t.Errorf("%d connections open after the run", all)
	}
}

// With on_failure: rollback, failures past max_failures put the hosts of the
// earlier batches back on the image each slot ran, start-first preferred,
// and the report says where every host is.
func TestOnFailureRollbackPutsEarlierBatchesBack(t *testing.T) {
	o := newOpsFleet(t, 4, "a", "b")
	o.host("h3").fail["a"] = true // batch 2's first host: its slot a rolls back
	e := opsExecutor(o, newFakeLease(5))
	e.OnFailure = OnFailureRollback
	res, err := e.Run(context.Background(), hostNames(4), nil, Strategy{Batch: Size{count: 2}})
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("error %v, want ErrFailed", err)
	}
	if res.RolledBack != 3 { // h1, h2 (batch 1) and h4 (replaced in batch 2)
		t.Errorf("rolled back %d hosts, want 3", res.RolledBack)
	}
	for _, h := range hostNames(4) {
		a := o.host(h)
		for _, s := range []string{"a", "b"} {
			if img := a.imageOf(s); img != "app:v1" {
				t.Errorf("host %s slot %s runs %s, want app:v1 back", h, s, img)
			}
		}
	}
	hosts, reqs := o.requests()
	backs := 0
	for i, r := range reqs {
		if r.GetImage() == "app:v1" {
			backs++
			if !r.GetPreferStartFirst() || r.GetFence().GetToken() != 5 {
				t.Errorf("rollback request to %s: prefer_start_first %v fence %v", hosts[i], r.GetPreferStartFirst(), r.GetFence())
			}
		}
	}
	if backs != 6 { // h1, h2 and h4 (replaced in batch 2), slots a and b
		t.Errorf("%d rollback requests, want 6", backs)
	}
	var out bytes.Buffer
	WriteTable(&out, res)
	if !strings.Contains(out.String(), "where the hosts are now:\n  4 host(s) on a=app:v1 b=app:v1: h1 h2 h3 h4") {
		t.Errorf("report does not say where the hosts are:\n%s", out.String())
	}
}

// Per-pair images (a rollback to what each slot ran): each pair is asked for
// its own image, a pair without one is not asked.
func TestPerPairImages(t *testing.T) {
	o := newOpsFleet(t, 2, "a", "b")
	e := opsExecutor(o, newFakeLease(9))
	e.Image = ""
	e.Images = map[string]string{PairKey("h1", "a"): "app:v0", PairKey("h1", "b"): "app:v0", PairKey("h2", "b"): "app:v9"}
	e.PreferStartFirst = true
	e.Prepull = true
	if _, err := e.Run(context.Background(), hostNames(2), nil, Strategy{Batch: Size{count: 2}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	hosts, reqs := o.requests()
	for i, r := range reqs {
		got[PairKey(hosts[i], r.GetSlots()[0])] = r.GetImage()
		if !r.GetPreferStartFirst() {
			t.Errorf("request %v without prefer_start_first", r)
		}
	}
	if len(got) != 3 || got["h1/a"] != "app:v0" || got["h2/b"] != "app:v9" {
		t.Errorf("asked %v, want exactly the three pairs of Images", got)
	}
	if !slices.Equal(o.pulls["h1"], []string{"app:v0"}) || !slices.Equal(o.pulls["h2"], []string{"app:v9"}) {
		t.Errorf("pulls %v, want each host's own images", o.pulls)
	}
}

// on_failure: pause waits for a decision: promote goes on, abort stops.
func TestOnFailurePauseWaitsForADecision(t *testing.T) {
	for _, decision := range []string{DecisionPromote, DecisionAbort} {
		t.Run(decision, func(t *testing.T) {
			o := newOpsFleet(t, 4, "a")
			o.host("h1").fail["a"] = true
			e := opsExecutor(o, newFakeLease(3))
			e.OnFailure = OnFailurePause
			e.StateFile = filepath.Join(t.TempDir(), "state.json")
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if st, err := ReadState(e.StateFile); err == nil && st.Paused != "" {
						if _, err := Decide(e.StateFile, decision, "test"); err != nil {
							t.Error(err)
						}
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
			res, _ := e.Run(context.Background(), hostNames(4), nil, Strategy{Batch: Size{count: 1}})
			<-done
			_, reqs := o.requests()
			if decision == DecisionPromote && len(reqs) != 4 {
				t.Errorf("promote: %d redeploys, want all 4 hosts asked", len(reqs))
			}
			if decision == DecisionAbort && (len(reqs) != 1 || !strings.Contains(res.Stopped, "aborted during the pause")) {
				t.Errorf("abort: %d redeploys, stopped %q; want 1 and aborted", len(reqs), res.Stopped)
			}
			if st, err := ReadState(e.StateFile); err != nil || st.Paused != "" {
				t.Errorf("state after the decision: paused %q (%v), want not paused", st.Paused, err)
			}
		})
	}
}

// While a rollout runs, the claims of its hosts are renewed every third of
// claim_ttl: a host waiting for a later batch stays claimed however long
// the rollout takes.
func TestClaimsAreRenewedWhileTheRolloutRuns(t *testing.T) {
	o := newOpsFleet(t, 2, "a")
	o.host("h2").delay = 300 * time.Millisecond // batch 2 ends ~0.3 s after the start
	e := opsExecutor(o, newFakeLease(8))
	e.ClaimTTL = 60 * time.Millisecond // renewed every 20 ms
	if _, err := e.Run(context.Background(), hostNames(2), nil, Strategy{Batch: Size{count: 1}}); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, h := range hostNames(2) {
		claims := 0
		for _, c := range o.claims[h] {
			if !c.GetRelease() {
				claims++
				if c.GetFence().GetClaimTtl().AsDuration() != 60*time.Millisecond {
					t.Errorf("host %s: claim ttl %s, want 60ms", h, c.GetFence().GetClaimTtl().AsDuration())
				}
			}
		}
		if claims < 5 {
			t.Errorf("host %s claimed %d times in a 0.3 s rollout with claims renewed every 20 ms, want at least 5", h, claims)
		}
	}
}

// A rollout refused in the moment between its rival's taking the lock and
// writing who it is still names the holder: the refusal waits for it (up to
// holderInfoWait). Found by the integration test of two rollouts started
// together: 2 refusals of 8 named "(unknown)".
func TestARefusalInTheHoldersFirstMomentNamesIt(t *testing.T) {
	s := NewFileStore(filepath.Join(t.TempDir(), "state.json"))
	f, err := s.tryLock()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = s.hold(f, LockInfo{RolloutID: "r-first", Holder: "alice@ci", Kind: KindRollout})
	}()
	_, err = s.Acquire(context.Background(), LockInfo{RolloutID: "r-second", Holder: "bob@ci", Kind: KindRollout}, 0)
	var le *LockedError
	if !errors.As(err, &le) || le.Holder.RolloutID != "r-first" || le.Holder.Holder != "alice@ci" {
		t.Fatalf("refusal %v, want it to name r-first held by alice@ci", err)
	}
}
