package rollout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// statePath is a state file under the test's temporary directory.
func statePath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state", "rollout.json")
}

// cancelAfterBatch returns a context cancelled when batch n ends, and the
// Events function that does it.
func cancelAfterBatch(t *testing.T, n int) (context.Context, func(Event)) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, func(e Event) {
		if e.Kind == EventBatchEnd && e.Batch == n {
			cancel()
		}
	}
}

func TestARolloutCancelledAfterItsFirstBatchResumesWithTheRemainingPairsOnly(t *testing.T) {
	f := newFleet(t, 6, "a", "b")
	path := statePath(t)
	e := f.executor()
	e.StateFile = path
	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	_, err := e.Run(ctx, hostNames(6), []string{"a", "b"}, mustStrategy(t, "2"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	first := f.allCalls()
	if len(first) != 4 {
		t.Fatalf("the first run asked %v, want h1 and h2 for a and b", first)
	}
	st, err := LoadResumable(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Complete || len(st.Done) != 4 || st.Image != "app:v2" || st.Pairs() != 12 {
		t.Fatalf("state complete %v, %d done of %d, image %s", st.Complete, len(st.Done), st.Pairs(), st.Image)
	}

	e = f.executor()
	e.StateFile = path
	var rec recorder
	e.Events = rec.add
	res, err := e.Resume(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	resumed := f.allCalls()[len(first):]
	for _, c := range resumed {
		if c.host == "h1" || c.host == "h2" {
			t.Errorf("the resume asked %v again", c)
		}
	}
	if len(resumed) != 8 {
		t.Errorf("the resume asked %v, want h3..h6 for a and b", resumed)
	}
	for _, h := range []string{"h1", "h2"} {
		if f.dials[h] != 1 {
			t.Errorf("%s dialled %d times, want once: the resume has nothing to ask it", h, f.dials[h])
		}
	}
	if res.Totals != (Totals{Hosts: 6, Done: 6}) || res.Resumed != 4 {
		t.Errorf("totals %+v, resumed %d", res.Totals, res.Resumed)
	}
	if hr := hostResult(t, res, "h1"); hr.Result != HostDone || hr.Slots[1].Result != ResultReplaced {
		t.Errorf("h1 %+v: the result covers what the first run did", hr)
	}
	if n := len(rec.kinds(EventBatchStart)); n != 2 {
		t.Errorf("%d batch_start events, want 2: the finished batch is not run again", n)
	}
	if _, err := LoadResumable(path, ""); !errors.Is(err, ErrNothingToResume) {
		t.Errorf("resuming a finished rollout: got %v, want ErrNothingToResume", err)
	}
	done, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !done.Complete || done.Outcome != HostDone || len(done.Done) != 12 {
		t.Errorf("final state complete %v outcome %q, %d pairs done", done.Complete, done.Outcome, len(done.Done))
	}
}

func TestResumeIsRefusedWithoutAnUnfinishedRollout(t *testing.T) {
	path := statePath(t)
	if _, err := LoadResumable(path, ""); !errors.Is(err, ErrNothingToResume) || !strings.Contains(err.Error(), path) {
		t.Errorf("no state file: got %v, want ErrNothingToResume naming the file", err)
	}

	f := newFleet(t, 3, "a")
	e := f.executor()
	e.StateFile = path
	if _, err := e.Run(t.Context(), hostNames(3), []string{"a"}, mustStrategy(t, "1")); err != nil {
		t.Fatal(err)
	}
	_, err := LoadResumable(path, "")
	if !errors.Is(err, ErrNothingToResume) || !strings.Contains(err.Error(), "is complete") {
		t.Errorf("finished rollout: got %v, want ErrNothingToResume saying it is complete", err)
	}

	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	if _, err := e.Run(ctx, hostNames(3), []string{"a"}, mustStrategy(t, "1")); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := LoadResumable(path, "app:v3"); !errors.Is(err, ErrImageMismatch) || !strings.Contains(err.Error(), "app:v2") {
		t.Errorf("another image: got %v, want ErrImageMismatch naming app:v2", err)
	}
	if _, err := LoadResumable(path, "app:v2"); err != nil {
		t.Errorf("the same image: %v", err)
	}
}

func TestAResumeWaitsForAHostStillBusyWithTheSlotLeftInFlightThenAsksItAgain(t *testing.T) {
	f := newFleet(t, 4, "a", "b")
	for _, a := range f.hosts {
		a.delay = time.Hour
	}
	path := statePath(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f.onCall = func(c call) {
		if c.host == "h2" {
			cancel() // the coordinator dies with a in flight on h1 and h2
		}
	}
	e := f.executor()
	e.StateFile = path
	if _, err := e.Run(ctx, hostNames(4), []string{"a", "b"}, mustStrategy(t, "2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	st, err := LoadResumable(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Done) != 0 {
		t.Fatalf("recorded %+v: a call cut short by the coordinator is not finished", st.Done)
	}

	// The agents go on on their own: h1 is busy a little longer.
	f.mu.Lock()
	f.onCall = nil
	for _, a := range f.hosts {
		a.delay = 2 * time.Millisecond
	}
	f.hosts["h1"].busy = "rollout by carol of app:v2"
	f.mu.Unlock()
	time.AfterFunc(150*time.Millisecond, func() {
		f.mu.Lock()
		f.hosts["h1"].busy = ""
		f.mu.Unlock()
	})
	before := len(f.allCalls())
	e = f.executor()
	e.StateFile, e.PollInterval = path, 10*time.Millisecond
	var rec recorder
	e.Events = rec.add
	start := time.Now()
	res, err := e.Resume(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("resumed after %s, before h1 was idle", d)
	}
	if w := rec.kinds(EventWaiting); len(w) != 1 || w[0].Host != "h1" || !strings.Contains(w[0].Detail, "carol") {
		t.Errorf("waiting events %+v, want one for h1 naming who holds it", w)
	}
	var got []call
	for _, c := range f.allCalls()[before:] {
		if c.host == "h1" || c.host == "h2" {
			got = append(got, c)
		}
	}
	slices.SortFunc(got, func(x, y call) int { return strings.Compare(x.slot+x.host, y.slot+y.host) })
	if want := []call{{"h1", "a"}, {"h2", "a"}, {"h1", "b"}, {"h2", "b"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("the resume asked h1 and h2 for %v, want %v: the slot in flight is asked again", got, want)
	}
	if res.Totals != (Totals{Hosts: 4, Done: 4}) {
		t.Errorf("totals %+v", res.Totals)
	}
}

func TestAResumeIsRefusedWhenAHostStaysBusyPastTheStepTimeout(t *testing.T) {
	f := newFleet(t, 2, "a")
	path := statePath(t)
	e := f.executor()
	e.StateFile = path
	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	if _, err := e.Run(ctx, hostNames(2), []string{"a"}, mustStrategy(t, "1")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	st, err := LoadResumable(path, "")
	if err != nil {
		t.Fatal(err)
	}
	f.host("h2").busy = "redeploy by dave of app:v9"
	before := len(f.allCalls())
	e = f.executor()
	e.StateFile, e.StepTimeout, e.PollInterval = path, 100*time.Millisecond, 10*time.Millisecond
	_, err = e.Resume(t.Context(), st)
	if !errors.Is(err, ErrPreflight) || !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "dave") {
		t.Fatalf("got %v, want ErrPreflight wrapping ErrBusy naming the holder", err)
	}
	if calls := f.allCalls()[before:]; len(calls) > 0 {
		t.Errorf("the refused resume asked %v", calls)
	}
	if st, err := LoadResumable(path, ""); err != nil || len(st.Done) != 1 {
		t.Errorf("after a refused resume: %v, %+v; want it still resumable", err, st)
	}
}

func TestAFailureRecordedBeforeTheResumeStillCountsAndEndsItsHost(t *testing.T) {
	f := newFleet(t, 6, "a", "b")
	f.host("h2").fail["a"] = true
	path := statePath(t)
	e := f.executor()
	e.StateFile = path
	e.MaxFailures, _ = ParseMaxFailures("1")
	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	if _, err := e.Run(ctx, hostNames(6), []string{"a", "b"}, mustStrategy(t, "2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	st, err := LoadResumable(path, "")
	if err != nil {
		t.Fatal(err)
	}
	f.host("h4").fail["a"] = true // a second failure passes max_failures 1
	before := len(f.allCalls())
	e = f.executor()
	e.StateFile = path
	e.MaxFailures, _ = ParseMaxFailures(st.MaxFailures)
	res, err := e.Resume(t.Context(), st)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "host h2 slot a") {
		t.Fatalf("got %v, want ErrFailed naming h2's recorded failure", err)
	}
	var hosts []string
	for _, c := range f.allCalls()[before:] {
		hosts = append(hosts, c.host)
	}
	slices.Sort(hosts)
	if want := []string{"h3", "h3", "h4"}; !reflect.DeepEqual(hosts, want) {
		t.Errorf("the resume asked %v, want h3 (a, b) and h4 (a): h2 failed before, batch 3 is stopped", hosts)
	}
	if res.Totals != (Totals{Hosts: 6, Done: 2, Failed: 2, NotRun: 2}) || res.Stopped == "" {
		t.Errorf("totals %+v, stopped %q", res.Totals, res.Stopped)
	}
	done, err := ReadState(path)
	if err != nil || !done.Complete || done.Outcome != HostFailed || done.Stopped == "" {
		t.Errorf("final state %+v, %v: want complete, failed, stopped", done, err)
	}
}

func TestARolloutWhoseStateFileCannotBeWrittenTouchesNoHost(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t, 2, "a")
	e := f.executor()
	e.StateFile = filepath.Join(blocker, "rollout.json")
	_, err := e.Run(t.Context(), hostNames(2), []string{"a"}, mustStrategy(t, "1"))
	if !errors.Is(err, ErrPreflight) || !errors.Is(err, ErrState) {
		t.Fatalf("got %v, want ErrPreflight wrapping ErrState", err)
	}
	if calls := f.allCalls(); len(calls) > 0 {
		t.Errorf("asked %v", calls)
	}
}

func TestTheStateFileIsReplacedAtomicallyAndLeavesNoTemporaryFile(t *testing.T) {
	path := statePath(t)
	st := &State{Version: stateVersion, Image: "app:v2", Slots: []string{"a"}, Hosts: []string{"h1"},
		Plan: Plan{Batches: []Batch{{Hosts: []string{"h1"}, Steps: []Step{{Slot: "a", Hosts: []string{"h1"}}}}}}}
	for i := range 3 {
		st.Done = append(st.Done, PairResult{Host: "h1", Slot: "a", Result: ResultReplaced, Batch: i})
		if err := WriteState(path, st); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "rollout.json" {
		t.Errorf("state directory holds %v, want rollout.json alone", entries)
	}
	got, err := ReadState(path)
	if err != nil || len(got.Done) != 3 {
		t.Fatalf("read back %+v, %v", got, err)
	}
}
