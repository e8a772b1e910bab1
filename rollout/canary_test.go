package rollout

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

func TestJudgeFailsANewServerWorseThanTheLimitAndTheOldServers(t *testing.T) {
	p := CanaryPolicy{MaxErrorRate: 0.01, Margin: 0.005, MinRequests: 100}
	for _, c := range []struct {
		name     string
		new, old Traffic
		pass     bool
		why      string
	}{
		{"clean", Traffic{Requests: 1000}, Traffic{Requests: 9000}, true, "new: 0 errors / 1000"},
		{"under the limit", Traffic{Requests: 1000, Errors: 10}, Traffic{Requests: 9000}, true, "(1.00%)"},
		{"over the limit and the old", Traffic{Requests: 1000, Errors: 50}, Traffic{Requests: 9000, Errors: 9}, false, "above max_error_rate"},
		{"over the limit, but the old as bad", Traffic{Requests: 1000, Errors: 50}, Traffic{Requests: 9000, Errors: 450}, true, "(5.00%)"},
		{"over the limit, old within the margin", Traffic{Requests: 1000, Errors: 50}, Traffic{Requests: 10000, Errors: 460}, true, ""},
		{"over the old by more than the margin", Traffic{Requests: 1000, Errors: 60}, Traffic{Requests: 10000, Errors: 400}, false, "by more than 0.50%"},
		{"too little traffic", Traffic{Requests: 99}, Traffic{Requests: 9000}, false, "fewer than min_requests 100"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pass, why := p.Judge(c.new, c.old)
			if pass != c.pass || !strings.Contains(why, c.why) {
				t.Fatalf("Judge = %v, %q; want %v and %q in the reason", pass, why, c.pass, c.why)
			}
		})
	}
}

func TestCountersThatGoBackToZeroAfterAReloadAreCountedFromZero(t *testing.T) {
	var c counterTally
	for _, s := range []*agentpb.SlotCounters{
		{Responses: 1000, Hrsp_5Xx: 10},          // before the window: the base
		{Responses: 1100, Hrsp_5Xx: 12, Econ: 1}, // +100 responses, +1 econ, 3 errors
		{Error: "haproxy does not answer"},       // skipped
		{Responses: 50, Hrsp_5Xx: 1, Eresp: 2},   // reload: from 0 again
		{Responses: 150, Hrsp_5Xx: 1, Eresp: 2},  // +100
	} {
		c.add(s)
	}
	want := Traffic{Requests: 101 + 50 + 100, Errors: 3 + 3}
	if c.total != want {
		t.Fatalf("tally %+v, want %+v", c.total, want)
	}
}

// canaryExecutor rolls app:v2 over 4 hosts of 3 slots, host 1 a canary.
func canaryExecutor(t *testing.T, f *fakeFleet, p CanaryPolicy) (*Executor, Strategy, *recorder) {
	t.Helper()
	e := f.executor()
	e.Canary = &p
	e.StateFile = filepath.Join(t.TempDir(), "rollout.json")
	var rec recorder
	e.Events = rec.add
	return e, Strategy{Batch: mustSize(t, "2"), Canary: mustSize(t, "1")}, &rec
}

var quickCanary = CanaryPolicy{Slots: 1, WeightPercent: 10, Window: 60 * time.Millisecond, Interval: 10 * time.Millisecond,
	MaxErrorRate: 0.01, Margin: 0.005, MinRequests: 100}

func TestAHealthyCanaryRunsAtItsShareThenIsPromotedAndTheRolloutGoesOn(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	e, s, rec := canaryExecutor(t, f, quickCanary)
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if err != nil {
		t.Fatal(err)
	}
	canary := hostNames(4)[0]
	if got := f.host(canary).weights["a"]; !slices.Equal(got, []int32{10}) {
		t.Errorf("canary slot a asked with weight shares %v, want [10]", got)
	}
	if got := f.host(canary).weights["b"]; !slices.Equal(got, []int32{0}) {
		t.Errorf("canary host's slot b (after the promotion) asked with %v, want the whole weight [0]", got)
	}
	if got := f.host(hostNames(4)[1]).weights["a"]; !slices.Equal(got, []int32{0}) {
		t.Errorf("a later batch asked with %v, want [0]", got)
	}
	if f.promotes[canary] != 1 || len(f.promotes) != 1 {
		t.Errorf("promotes %v, want one on %s", f.promotes, canary)
	}
	if res.Totals != (Totals{Hosts: 4, Done: 4}) {
		t.Errorf("totals %+v", res.Totals)
	}
	if len(rec.kinds(EventCanaryPassed)) != 1 || len(rec.kinds(EventCanaryPromoted)) != 1 {
		t.Errorf("events: %d passed, %d promoted", len(rec.kinds(EventCanaryPassed)), len(rec.kinds(EventCanaryPromoted)))
	}
	st, err := ReadState(e.StateFile)
	if err != nil || st.Canary == nil || st.Canary.Phase != CanaryPromoted || st.Canary.New.Requests < 100 {
		t.Fatalf("state %+v, %v", st.Canary, err)
	}
}

func TestACanaryServingErrorsIsRolledBackAndTheRestOfTheFleetIsUntouched(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	f.errorRate["app:v2"] = 0.2
	e, s, rec := canaryExecutor(t, f, quickCanary)
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err %v, want ErrFailed", err)
	}
	canary := hostNames(4)[0]
	if got := f.callsTo(canary); !slices.Equal(got, []string{"a", "a"}) {
		t.Errorf("canary host asked for %v, want slot a, then a again (the rollback)", got)
	}
	if im := f.host(canary).imageOf("a"); im != "app:v1" {
		t.Errorf("canary slot a runs %s after the rollback, want app:v1", im)
	}
	for _, h := range hostNames(4)[1:] {
		if got := f.callsTo(h); len(got) != 0 {
			t.Errorf("host %s outside the canary was asked for %v", h, got)
		}
	}
	if !strings.Contains(res.Stopped, "canary failed") || !strings.Contains(res.Stopped, "above max_error_rate") {
		t.Errorf("stopped %q", res.Stopped)
	}
	if hr := hostResult(t, res, canary); hr.Result != HostFailed || hr.Slots[0].Result != ResultRolledBack {
		t.Errorf("canary host %+v", hr)
	}
	if res.Totals != (Totals{Hosts: 4, Failed: 1, NotRun: 3}) {
		t.Errorf("totals %+v", res.Totals)
	}
	if len(f.promotes) != 0 {
		t.Errorf("promoted %v", f.promotes)
	}
	if ev := rec.kinds(EventCanaryRollback); len(ev) != 1 || ev[0].Result != ResultRolledBack {
		t.Errorf("rollback events %+v", ev)
	}
}

func TestACanaryWithTooLittleTrafficIsNotPromoted(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	p := quickCanary
	p.MinRequests = 1_000_000
	e, s, _ := canaryExecutor(t, f, p)
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if !errors.Is(err, ErrFailed) || !strings.Contains(res.Stopped, "not enough traffic") {
		t.Fatalf("%v, stopped %q", err, res.Stopped)
	}
}

// runPaused starts a paused canary rollout and waits until it is paused.
func runPaused(t *testing.T, f *fakeFleet) (*Executor, chan error, chan Result) {
	t.Helper()
	p := quickCanary
	p.Pause = true
	e, s, _ := canaryExecutor(t, f, p)
	errc, resc := make(chan error, 1), make(chan Result, 1)
	go func() {
		res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
		resc <- res
		errc <- err
	}()
	waitCanaryPhase(t, e.StateFile, CanaryPaused)
	return e, errc, resc
}

func TestAPausedCanaryWaitsForAPersonToPromoteIt(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	e, errc, _ := runPaused(t, f)
	time.Sleep(3 * decisionPoll)
	if got := f.callsTo(hostNames(4)[1]); len(got) != 0 {
		t.Fatalf("a paused rollout went on: %v", got)
	}
	if _, err := Decide(e.StateFile, DecisionPromote, "test"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if f.promotes[hostNames(4)[0]] != 1 {
		t.Errorf("promotes %v", f.promotes)
	}
	if _, err := Decide(e.StateFile, DecisionAbort, "test"); !errors.Is(err, ErrNoCanaryWaiting) {
		t.Errorf("a decision for a complete rollout: %v, want ErrNoCanaryWaiting", err)
	}
}

func TestAPausedCanaryThatAPersonAbortsIsRolledBack(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	e, errc, resc := runPaused(t, f)
	if _, err := Decide(e.StateFile, DecisionAbort, "test"); err != nil {
		t.Fatal(err)
	}
	res := <-resc
	if err := <-errc; !errors.Is(err, ErrFailed) || !strings.Contains(res.Stopped, "aborted by a person") {
		t.Fatalf("%v, stopped %q", err, res.Stopped)
	}
	if im := f.host(hostNames(4)[0]).imageOf("a"); im != "app:v1" {
		t.Errorf("canary slot runs %s, want app:v1", im)
	}
}

func TestPromoteIsRefusedWithoutACanaryWaiting(t *testing.T) {
	dir := t.TempDir()
	if _, err := Decide(filepath.Join(dir, "none.json"), DecisionPromote, "test"); !errors.Is(err, ErrNoCanaryWaiting) {
		t.Errorf("no state file: %v", err)
	}
	f := newFleet(t, 4, "a", "b", "c")
	e := f.executor()
	e.StateFile = filepath.Join(dir, "rollout.json")
	if _, err := e.Run(t.Context(), hostNames(4), []string{"a"}, mustStrategy(t, "50%")); err != nil {
		t.Fatal(err)
	}
	if _, err := Decide(e.StateFile, DecisionPromote, "test"); !errors.Is(err, ErrNoCanaryWaiting) {
		t.Errorf("a complete rollout: %v", err)
	}
	if _, err := Decide(e.StateFile, "ship-it", "test"); err == nil {
		t.Error("an unknown decision was accepted")
	}
}

func TestAPausedCanaryWhoseCoordinatorDiedIsJudgedAgainAndPromotedOnResume(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	p := quickCanary
	p.Pause = true
	e, s, _ := canaryExecutor(t, f, p)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(ctx, hostNames(4), []string{"a", "b", "c"}, s)
		done <- err
	}()
	waitCanaryPhase(t, e.StateFile, CanaryPaused)
	cancel() // the coordinator dies while paused
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	// The person promotes while no coordinator runs; the resume carries it
	// out after judging the canary again.
	if _, err := Decide(e.StateFile, DecisionPromote, "test"); err != nil {
		t.Fatal(err)
	}
	st, err := LoadResumable(e.StateFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.CanaryPolicy == nil || !st.CanaryPolicy.Pause {
		t.Fatalf("the state file does not keep the canary policy: %+v", st.CanaryPolicy)
	}
	resumed := f.executor()
	resumed.StateFile, resumed.Canary = e.StateFile, st.CanaryPolicy
	res, err := resumed.Resume(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	canary := hostNames(4)[0]
	if got := f.callsTo(canary); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("canary host asked for %v, want a once (before the crash), then b and c", got)
	}
	if f.promotes[canary] != 1 || res.Totals != (Totals{Hosts: 4, Done: 4}) {
		t.Errorf("promotes %v, totals %+v", f.promotes, res.Totals)
	}
}

func waitCanaryPhase(t *testing.T, stateFile, phase string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := ReadState(stateFile)
		if err == nil && st.Canary != nil && st.Canary.Phase == phase {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canary never reached %s: %+v, %v", phase, st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// killWhilePaused runs a paused canary rollout of f's hosts and slots,
// cancels it once paused, and returns its executor and recorded state.
func killWhilePaused(t *testing.T, f *fakeFleet, slots []string) (*Executor, *State) {
	t.Helper()
	p := quickCanary
	p.Pause = true
	e, s, _ := canaryExecutor(t, f, p)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(ctx, hostNames(len(f.hosts)), slots, s)
		done <- err
	}()
	waitCanaryPhase(t, e.StateFile, CanaryPaused)
	cancel()
	<-done
	st, err := LoadResumable(e.StateFile, "")
	if err != nil {
		t.Fatal(err)
	}
	return e, st
}

func TestResumingACanaryWhoseHostsHaveNoPairLeftDialsThemAgain(t *testing.T) {
	// One slot per host: the canary host has nothing left to replace, so
	// the resume's preflight does not dial it; the analysis and the
	// promotion must.
	f := newFleet(t, 4, "a")
	e, st := killWhilePaused(t, f, []string{"a"})
	if _, err := Decide(e.StateFile, DecisionPromote, "test"); err != nil {
		t.Fatal(err)
	}
	resumed := f.executor()
	resumed.StateFile, resumed.Canary = e.StateFile, st.CanaryPolicy
	res, err := resumed.Resume(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if f.promotes[hostNames(4)[0]] != 1 || res.Totals != (Totals{Hosts: 4, Done: 4}) {
		t.Fatalf("promotes %v, totals %+v", f.promotes, res.Totals)
	}
}

func TestResumingAnAbortedCanaryWhoseHostsHaveNoPairLeftRollsThemBack(t *testing.T) {
	f := newFleet(t, 4, "a")
	e, st := killWhilePaused(t, f, []string{"a"})
	if _, err := Decide(e.StateFile, DecisionAbort, "test"); err != nil {
		t.Fatal(err)
	}
	resumed := f.executor()
	resumed.StateFile, resumed.Canary = e.StateFile, st.CanaryPolicy
	if _, err := resumed.Resume(t.Context(), st); !errors.Is(err, ErrCanaryFailed) {
		t.Fatalf("%v, want ErrCanaryFailed", err)
	}
	if im := f.host(hostNames(4)[0]).imageOf("a"); im != "app:v1" {
		t.Fatalf("canary slot runs %s, want app:v1", im)
	}
}

func TestAPromotedCanaryIsNotRolledBackWhenALaterSlotOfItsHostFailed(t *testing.T) {
	f := newFleet(t, 4, "a", "b")
	canary := hostNames(4)[0]
	f.host(canary).fail["b"] = true // after the promotion, within max_failures
	e, s, _ := canaryExecutor(t, f, quickCanary)
	e.MaxFailures, _ = ParseMaxFailures("1")
	ctx, cancel := context.WithCancel(t.Context())
	f.onCall = func(c call) { // the coordinator dies in batch 2
		if c.host == hostNames(4)[1] {
			cancel()
		}
	}
	_, _ = e.Run(ctx, hostNames(4), []string{"a", "b"}, s)
	f.onCall = nil
	st, err := LoadResumable(e.StateFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Canary.Phase != CanaryPromoted {
		t.Fatalf("canary %s before the resume, want promoted", st.Canary.Phase)
	}
	resumed := f.executor()
	resumed.StateFile, resumed.Canary, resumed.MaxFailures = e.StateFile, st.CanaryPolicy, e.MaxFailures
	res, err := resumed.Resume(t.Context(), st)
	if errors.Is(err, ErrCanaryFailed) {
		t.Fatalf("the resume rolled a promoted canary back: %v", err)
	}
	if im := f.host(canary).imageOf("a"); im != "app:v2" {
		t.Errorf("the promoted canary slot runs %s, want app:v2", im)
	}
	if res.Totals.Done != 3 || res.Totals.Failed != 1 {
		t.Errorf("totals %+v, want 3 done and the canary host failed by its slot b", res.Totals)
	}
}

func TestAnAbortIsRefusedOnceTheCanaryIsBeingPromoted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rollout.json")
	for _, phase := range []string{CanaryPromoting, CanaryPromoted} {
		st := &State{Version: stateVersion, Image: "app:v2", Slots: []string{"a"}, Plan: Plan{Batches: []Batch{{Hosts: []string{"h"}}}},
			Canary: &CanaryState{Phase: phase}}
		if err := WriteState(path, st); err != nil {
			t.Fatal(err)
		}
		if _, err := Decide(path, DecisionAbort, "test"); !errors.Is(err, ErrNoCanaryWaiting) || !strings.Contains(err.Error(), "too late") {
			t.Errorf("%s: %v, want a refusal saying it is too late", phase, err)
		}
	}
}

func TestTheOldImageIsRecordedBeforeTheCanaryIsAsked(t *testing.T) {
	f := newFleet(t, 4, "a", "b")
	e, s, _ := canaryExecutor(t, f, quickCanary)
	canary := hostNames(4)[0]
	f.onCall = func(c call) {
		if c.host != canary {
			return
		}
		st, err := ReadState(e.StateFile)
		if err != nil || st.Canary == nil || st.Canary.OldImages[canaryKey(canary, "a")] != "app:v1" {
			t.Errorf("when the canary is asked, the state file holds %+v, %v: want its old image app:v1", st.Canary, err)
		}
		f.onCall = nil
	}
	if _, err := e.Run(t.Context(), hostNames(4), []string{"a", "b"}, s); err != nil {
		t.Fatal(err)
	}
}

func TestACanaryRolledBackAfterAStepTimeoutWaitsForItsHostToGoIdle(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	canary := hostNames(4)[0]
	// The agent needs longer than the step timeout: the coordinator gives
	// up on the call while the agent still holds the host lock.
	f.host(canary).linger["a"] = 450 * time.Millisecond
	e, s, rec := canaryExecutor(t, f, quickCanary)
	e.StepTimeout, e.PollInterval = 300*time.Millisecond, 20*time.Millisecond
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if !errors.Is(err, ErrCanaryFailed) {
		t.Fatalf("%v, want ErrCanaryFailed", err)
	}
	waitIdle(t, f, canary) // what the agent does after the run ended counts too
	a := f.host(canary)
	f.mu.Lock()
	im := a.imageOf("a")
	f.mu.Unlock()
	if im != "app:v1" {
		t.Errorf("canary slot a runs %s once its host is idle, want app:v1 (rollback events %+v)", im, rec.kinds(EventCanaryRollback))
	}
	if ev := rec.kinds(EventCanaryRollback); len(ev) != 1 || ev[0].Result != ResultRolledBack {
		t.Errorf("rollback events %+v, want the slot rolled back", ev)
	}
	if len(rec.kinds(EventWaiting)) == 0 {
		t.Error("no event says the rollback waits for the busy host")
	}
	if hr := hostResult(t, res, canary); hr.Slots[0].Result != ResultRolledBack {
		t.Errorf("canary host %+v", hr)
	}
}

func TestACanaryRollbackGivesUpOnAHostStillBusyAfterTheStepTimeoutAndSaysSo(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	canary := hostNames(4)[0]
	f.host(canary).linger["a"] = 2 * time.Second
	e, s, rec := canaryExecutor(t, f, quickCanary)
	e.StepTimeout, e.PollInterval = 150*time.Millisecond, 20*time.Millisecond
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if !errors.Is(err, ErrCanaryFailed) || !errors.Is(err, ErrBusy) {
		t.Fatalf("%v, want ErrCanaryFailed and ErrBusy", err)
	}
	hr := hostResult(t, res, canary)
	for _, part := range []string{"still busy after waiting 150ms", "redeploy of app:v2 (slot a)", "haroll redeploy --image app:v1 --slot a"} {
		if !strings.Contains(hr.Slots[0].Error, part) {
			t.Errorf("slot error %q does not say %q", hr.Slots[0].Error, part)
		}
	}
	if ev := rec.kinds(EventCanaryRollback); len(ev) != 1 || ev[0].Result != ResultFailed {
		t.Errorf("rollback events %+v, want the slot failed", ev)
	}
}

// waitIdle waits until host h of f holds its lock for no lingering call.
func waitIdle(t *testing.T, f *fakeFleet, h string) {
	t.Helper()
	a := f.host(h)
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		busy := a.holding
		f.mu.Unlock()
		if busy == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s still busy: %s", h, busy)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lateAbort makes the coordinator meet a person's abort at the moment the
// promotion is decided and not yet recorded, and returns what Decide
// answered that person (once the run ended).
func lateAbort(t *testing.T, stateFile string) func() error {
	t.Helper()
	var answer error
	done := make(chan struct{})
	testHookDecided = func() {
		testHookDecided = nil
		go func() {
			defer close(done)
			_, answer = Decide(stateFile, DecisionAbort, "late")
		}()
		// Decide may wait for the coordinator: let it answer, or not.
		select {
		case <-done:
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Cleanup(func() { testHookDecided = nil })
	return func() error {
		<-done
		return answer
	}
}

func TestAnAbortWrittenAsTheCanaryIsPromotedIsCarriedOutOrRefusedNeverIgnored(t *testing.T) {
	for _, pause := range []bool{false, true} {
		t.Run(fmt.Sprintf("pause=%v", pause), func(t *testing.T) {
			f := newFleet(t, 4, "a", "b", "c")
			p := quickCanary
			p.Pause = pause
			e, s, _ := canaryExecutor(t, f, p)
			answer := lateAbort(t, e.StateFile)
			if pause {
				go func() {
					waitCanaryPhase(t, e.StateFile, CanaryPaused)
					if _, err := Decide(e.StateFile, DecisionPromote, "test"); err != nil {
						t.Error(err)
					}
				}()
			}
			res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
			aborted := answer()
			canary := hostNames(4)[0]
			f.mu.Lock()
			promoted, image := f.promotes[canary] > 0, f.hosts[canary].imageOf("a")
			f.mu.Unlock()
			switch {
			case aborted == nil && promoted:
				t.Fatalf("the person was told the abort was recorded, and the canary was promoted (run: %v)", err)
			case aborted == nil:
				if !errors.Is(err, ErrCanaryFailed) || image != "app:v1" {
					t.Fatalf("abort recorded: the run %v, slot a on %s; want the canary rolled back", err, image)
				}
			case !errors.Is(aborted, ErrNoCanaryWaiting) || !strings.Contains(aborted.Error(), "too late"):
				t.Fatalf("abort refused with %v: want a refusal that says it is too late", aborted)
			case !promoted || err != nil || res.Totals.Done != 4:
				t.Fatalf("abort refused as too late, but the canary was not promoted: %v, %+v", err, res.Totals)
			}
		})
	}
}

func TestACoordinatorStoppedWhilePromotingFinishesThePromotionOnResume(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	e, s, _ := canaryExecutor(t, f, quickCanary)
	ctx, cancel := context.WithCancel(t.Context())
	testHookDecided = func() { testHookDecided = nil; cancel() } // stopped as the promotion begins
	t.Cleanup(func() { testHookDecided = nil })
	if _, err := e.Run(ctx, hostNames(4), []string{"a", "b", "c"}, s); !errors.Is(err, context.Canceled) {
		t.Fatalf("the stopped run: %v, want context.Canceled", err)
	}
	// The promotion was decided: an abort now is too late, and the resume
	// carries the promotion out rather than judging the canary again.
	if _, err := Decide(e.StateFile, DecisionAbort, "test"); !errors.Is(err, ErrNoCanaryWaiting) || !strings.Contains(err.Error(), "too late") {
		t.Fatalf("abort after the promotion was decided: %v, want too late", err)
	}
	st, err := LoadResumable(e.StateFile, "")
	if err != nil {
		t.Fatal(err)
	}
	resumed := f.executor()
	resumed.StateFile, resumed.Canary = e.StateFile, st.CanaryPolicy
	res, err := resumed.Resume(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	canary := hostNames(4)[0]
	if f.promotes[canary] != 1 || res.Totals != (Totals{Hosts: 4, Done: 4}) {
		t.Fatalf("promotes %v, totals %+v: want the canary promoted once and the rollout done", f.promotes, res.Totals)
	}
	if im := f.host(canary).imageOf("a"); im != "app:v2" {
		t.Fatalf("canary slot a runs %s, want app:v2", im)
	}
}

func TestACanaryThatWouldBeAServersWholeWeightIsRefusedBeforeAnyHostIsTouched(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	for _, h := range hostNames(4) {
		for _, slot := range []string{"a", "b", "c"} {
			f.host(h).serverWeight[slot] = 7
		}
	}
	canary := hostNames(4)[0]
	f.host(canary).serverWeight["a"] = 1          // HAProxy's default weight: 10% of it is all of it
	f.host(hostNames(4)[1]).serverWeight["a"] = 1 // not a canary: no share to take
	e, s, _ := canaryExecutor(t, f, quickCanary)
	_, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if !errors.Is(err, ErrPreflight) {
		t.Fatalf("%v, want ErrPreflight", err)
	}
	for _, want := range []string{"host h1 slot a: weight 1 at 10% is a canary weight of 1, the server's whole weight", "--canary-weight 100%"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "host h2") {
		t.Errorf("%q: a host outside the canary batch was refused", err)
	}
	if calls := f.allCalls(); len(calls) != 0 {
		t.Fatalf("hosts were asked to replace slots: %v", calls)
	}
	// The whole weight on purpose: --canary-weight 100%.
	p := quickCanary
	p.WeightPercent = 100
	e, s, _ = canaryExecutor(t, f, p)
	if _, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s); err != nil {
		t.Fatal(err)
	}
}

func TestAPromotionThatCannotBeRecordedPromotesNothing(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	e, s, _ := canaryExecutor(t, f, quickCanary)
	testHookDecided = func() { // the state file can no longer be written
		testHookDecided = nil
		testHookAppend = func() error { return errors.New("no space left on device") }
	}
	t.Cleanup(func() { testHookDecided, testHookAppend = nil, nil })
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if !errors.Is(err, ErrState) || !strings.Contains(res.Stopped, "nothing was promoted") {
		t.Fatalf("%v, stopped %q: want ErrState and nothing promoted", err, res.Stopped)
	}
	if len(f.promotes) != 0 {
		t.Fatalf("promoted %v without the promotion recorded", f.promotes)
	}
	if got := f.callsTo(hostNames(4)[1]); len(got) != 0 {
		t.Fatalf("the rollout went on to %s: %v", hostNames(4)[1], got)
	}
}

// A promotion that fails on a canary host (the agent unreachable) is not
// turned into a rollback: once recorded, the promotion is what an abort was
// refused for ("the promotion goes on"). The rollout stops with the canary
// still promoting, and --resume finishes it.
func TestAPromotionThatFailsIsFinishedByResumeNotRolledBack(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	canary := hostNames(4)[0]
	f.host(canary).promoteErr = errors.New("connection refused") // before the run: no lock needed
	e, s, _ := canaryExecutor(t, f, quickCanary)
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
	if err == nil || !strings.Contains(res.Stopped, "--resume") {
		t.Fatalf("err %v, stopped %q: want the rollout stopped, saying --resume finishes the promotion", err, res.Stopped)
	}
	if got := f.callsTo(canary); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("canary host asked for %v, want slot a only (no rollback)", got)
	}
	st, err := ReadState(e.StateFile)
	if err != nil || st.Canary == nil || st.Canary.Phase != CanaryPromoting {
		t.Fatalf("state %+v, %v: want the canary still promoting", st.Canary, err)
	}
	if _, err := Decide(e.StateFile, DecisionAbort, "test"); err == nil || !strings.Contains(err.Error(), "too late") {
		t.Fatalf("abort after a failed promotion: %v, want too late", err)
	}
	a := f.host(canary)
	f.mu.Lock()
	a.promoteErr = nil
	f.mu.Unlock()
	rs, err := LoadResumable(e.StateFile, "")
	if err != nil {
		t.Fatal(err)
	}
	resumed := f.executor()
	resumed.StateFile, resumed.Canary = e.StateFile, rs.CanaryPolicy
	res, err = resumed.Resume(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if f.promotes[canary] != 1 || res.Totals != (Totals{Hosts: 4, Done: 4}) {
		t.Fatalf("promotes %v, totals %+v: want the canary promoted and the rollout done", f.promotes, res.Totals)
	}
}

type refusingConn struct{ *fakeConn }

func (c refusingConn) Connect(context.Context) error {
	return fmt.Errorf("%w: connection refused", ErrUnreachable)
}

// A canary host whose dial failed once during the analysis (a blip) is never
// dialled again by the rollback in the same batch: the failed dial is cached.
func TestACanaryRollbackRedialsAHostWhoseAnalysisDialFailed(t *testing.T) {
	f := newFleet(t, 4, "a")
	e, st := killWhilePaused(t, f, []string{"a"})
	canaryHost := hostNames(4)[0]
	resumed := f.executor()
	resumed.StateFile, resumed.Canary = e.StateFile, st.CanaryPolicy
	var mu sync.Mutex
	blipped := false
	resumed.Dial = func(ctx context.Context, h string) (Agent, error) {
		a, err := f.dial(ctx, h)
		mu.Lock()
		defer mu.Unlock()
		if err == nil && h == canaryHost && !blipped {
			blipped = true
			return refusingConn{a.(*fakeConn)}, nil
		}
		return a, err
	}
	_, err := resumed.Resume(t.Context(), st)
	t.Logf("resume: %v", err)
	d, _ := f.dialsOf(canaryHost)
	if im := f.host(canaryHost).imageOf("a"); im != "app:v1" {
		t.Errorf("the canary slot runs %s after the rollback, want app:v1 (dials of the canary host: %d)", im, d)
	}
}

// With one slot per host, the canary step is the batch's last: the next
// batch is not dialled before the canary is judged (a --pause may last
// hours, and a failed canary stops the rollout).
func TestTheNextBatchIsNotDialledWhileTheCanaryIsJudged(t *testing.T) {
	f := newFleet(t, 4, "a")
	e, s, rec := canaryExecutor(t, f, quickCanary)
	var openDuringAnalysis int
	e.Events = func(ev Event) {
		rec.add(ev)
		if ev.Kind == EventCanaryAnalysis {
			f.mu.Lock()
			for _, h := range hostNames(4)[1:] {
				openDuringAnalysis += f.open[h]
			}
			f.mu.Unlock()
		}
	}
	if _, err := e.Run(t.Context(), hostNames(4), []string{"a"}, s); err != nil {
		t.Fatal(err)
	}
	if len(rec.kinds(EventCanaryAnalysis)) != 1 {
		t.Fatalf("no canary analysis: %v", rec.kinds(EventCanaryAnalysis))
	}
	if openDuringAnalysis != 0 {
		t.Errorf("%d connection(s) of later batches open while the canary was judged, want 0", openDuringAnalysis)
	}
	checkAllClosed(t, f)
}
