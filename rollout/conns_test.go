package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkAllClosed fails t unless every connection f handed out was closed,
// once.
func checkAllClosed(t *testing.T, f *fakeFleet) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, n := range f.dials {
		if f.closed[h] != n || f.open[h] != 0 {
			t.Errorf("host %s: %d connections, %d closed", h, n, f.closed[h])
		}
	}
	if len(f.closedTwice) > 0 {
		t.Errorf("connections closed twice: %v", f.closedTwice)
	}
}

// closedSoon reports whether f has no connection open to h within a
// second: the executor closes a connection in the background once released.
func closedSoon(f *fakeFleet, h string) bool {
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		if _, open := f.openNow(h); open == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func TestNoMoreConnectionsAreOpenThanOneBatchPlusTheHeadStartAndEveryOneIsClosedAfterItsHostsLastSlot(t *testing.T) {
	const n = 1000 // batches of 300: two of them outnumber one plus the head start
	f := newFleet(t, n, "a", "b")
	for _, a := range f.hosts {
		a.delay = time.Millisecond
	}
	plan, err := NewPlan(hostNames(n), []string{"a", "b"}, mustStrategy(t, "30%"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var problems []string
	e := f.executor()
	e.Events = func(ev Event) {
		switch {
		case ev.Kind == EventStepStart:
			allowed := len(plan.Batches[ev.Batch-1].Hosts) + predialHeadStart
			if all, _ := f.openNow(""); all > allowed {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("batch %d step %d starts with %d connections open, more than this batch plus the head start (%d)", ev.Batch, ev.Step, all, allowed))
				mu.Unlock()
			}
		case ev.Kind == EventBatchEnd:
			for _, h := range plan.Batches[ev.Batch-1].Hosts {
				if !closedSoon(f, h) {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("host %s is still connected at the end of its batch %d", h, ev.Batch))
					mu.Unlock()
					break // one is enough, and each waits a second
				}
			}
		}
	}
	res, err := e.Run(t.Context(), hostNames(n), []string{"a", "b"}, mustStrategy(t, "30%"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.Done != n {
		t.Fatalf("totals %+v", res.Totals)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if f.maxOpen > 300+predialHeadStart {
		t.Errorf("%d connections open at once, more than a batch of 300 plus the head start", f.maxOpen)
	}
	checkAllClosed(t, f)
	// The first batch runs on the connections of its preflight.
	for _, h := range plan.Batches[0].Hosts {
		if f.dials[h] != 1 {
			t.Errorf("host %s of the first batch dialled %d times, want once", h, f.dials[h])
		}
	}
}

func TestTheNextBatchIsDialledAsTheLastStepsHostsFinishSoNoMoreThanOneBatchPlusTheHeadStartIsOpen(t *testing.T) {
	const n, size = 2000, 600 // batches of 600, 600, 600, 200
	f := newFleet(t, n, "a", "b")
	for i, h := range hostNames(n) {
		// The hosts of a step finish over 30 ms, one every 50 µs or so.
		f.host(h).delay = time.Millisecond + time.Duration(i%size)*50*time.Microsecond
	}
	plan, err := NewPlan(hostNames(n), []string{"a", "b"}, mustStrategy(t, "30%"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	nextDialled := map[int]int{} // batch -> hosts of the next batch dialled by the end of its last step
	e := f.executor()
	e.Events = func(ev Event) {
		if ev.Kind != EventStepEnd || ev.Step != 2 || ev.Batch == len(plan.Batches) {
			return
		}
		// Events are emitted synchronously: the next batch (whose prepare
		// would dial its hosts itself) cannot start while this waits, so
		// whatever is dialled now was dialled by the pre-dial. It is paced
		// by background closes, which a loaded machine (CI runs this beside
		// other -race packages) may take a while to finish: wait up to 5 s
		// for the hosts the pre-dial must reach.
		next := plan.Batches[ev.Batch].Hosts
		want := min(len(next), size*9/10)
		dialled := 0
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			dialled = 0
			for _, h := range next {
				if _, connects := f.dialsOf(h); connects > 0 {
					dialled++
				}
			}
			if dialled >= want || time.Now().After(deadline) {
				break
			}
		}
		mu.Lock()
		nextDialled[ev.Batch] = dialled
		mu.Unlock()
	}
	res, err := e.Run(t.Context(), hostNames(n), []string{"a", "b"}, mustStrategy(t, "30%"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.Done != n {
		t.Fatalf("totals %+v", res.Totals)
	}
	if bound := size + predialHeadStart; f.maxOpen > bound {
		t.Errorf("%d connections open at once, more than a batch of %d plus the head start (%d)", f.maxOpen, size, bound)
	}
	// The pre-dial went on past its head start as the last step's hosts
	// finished, rather than waiting for the next batch to start.
	for bi := 1; bi < len(plan.Batches); bi++ {
		if got, want := nextDialled[bi], min(len(plan.Batches[bi].Hosts), size*9/10); got < want {
			t.Errorf("by the end of batch %d, %d hosts of batch %d dialled, want at least %d (head start %d)", bi, got, bi+1, want, predialHeadStart)
		}
	}
	checkAllClosed(t, f)
}

func TestAHostThatFailsIsDisconnectedAtOnceNotAtTheEnd(t *testing.T) {
	f := newFleet(t, 4, "a", "b", "c")
	f.host("h2").fail["a"] = true
	var mu sync.Mutex
	var atStepEnd []string
	e := f.executor()
	e.Events = func(ev Event) {
		if ev.Kind == EventStepEnd && ev.Batch == 1 && ev.Step == 1 {
			h2 := 1
			if closedSoon(f, "h2") {
				h2 = 0
			}
			_, h1 := f.openNow("h1") // the next step has not started yet
			mu.Lock()
			atStepEnd = append(atStepEnd, fmt.Sprintf("h1 %d h2 %d", h1, h2))
			mu.Unlock()
		}
	}
	_, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, mustStrategy(t, "2"))
	if !errors.Is(err, ErrSlotFailed) {
		t.Fatalf("got %v, want h2's slot a to fail", err)
	}
	// After the first step, h1 goes on to b and c; h2 is done with.
	if len(atStepEnd) != 1 || atStepEnd[0] != "h1 1 h2 0" {
		t.Errorf("connections open after batch 1 step 1: %v, want h1 1 h2 0", atStepEnd)
	}
	checkAllClosed(t, f)
}

func TestTheNextBatchIsDialledWhileTheLastStepOfTheCurrentOneRuns(t *testing.T) {
	f := newFleet(t, 6, "a", "b")
	for _, a := range f.hosts {
		a.delay = 50 * time.Millisecond
	}
	type seen struct{ dials, connects int }
	var mu sync.Mutex
	at := map[string]seen{} // "batch.step kind" -> h3 then
	e := f.executor()
	e.Events = func(ev Event) {
		if ev.Kind != EventStepStart && ev.Kind != EventStepEnd || ev.Batch != 1 {
			return
		}
		d, c := f.dialsOf("h3")
		mu.Lock()
		at[fmt.Sprintf("%d.%d %s", ev.Batch, ev.Step, ev.Kind)] = seen{d, c}
		mu.Unlock()
	}
	if _, err := e.Run(t.Context(), hostNames(6), []string{"a", "b"}, mustStrategy(t, "2")); err != nil {
		t.Fatal(err)
	}
	// h3 (batch 2) was dialled once for the preflight, then not before batch
	// 1's last step, and during it, its transport established.
	if s := at["1.1 "+string(EventStepEnd)]; s.dials != 1 {
		t.Errorf("h3 dialled %d times by the end of batch 1's first step, want once (the preflight)", s.dials)
	}
	if s := at["1.2 "+string(EventStepEnd)]; s.dials != 2 || s.connects != 1 {
		t.Errorf("by the end of batch 1's last step, h3 dialled %d times and connected %d, want 2 and 1", s.dials, s.connects)
	}
	checkAllClosed(t, f)
}

func TestAHostWhosePreDialFailsFailsInItsOwnBatchAsUnreachableWhileTheCurrentBatchGoesOn(t *testing.T) {
	f := newFleet(t, 6, "a", "b")
	for _, a := range f.hosts {
		a.delay = 20 * time.Millisecond
	}
	f.host("h4").refuseConnect = true // answers the preflight, then goes
	res, err := f.executor().Run(t.Context(), hostNames(6), []string{"a", "b"}, mustStrategy(t, "2"))
	if !errors.Is(err, ErrFailed) || !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "host h4 slot a") {
		t.Fatalf("got %v, want ErrFailed with h4 unreachable at slot a", err)
	}
	if res.Batches[0].Failed != 0 || res.Batches[1].Failed != 1 || res.Batches[2].Run {
		t.Errorf("batches %+v: want batch 1 whole, h4 failed in batch 2, batch 3 not run", res.Batches)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		if got := f.callsTo(h); len(got) != 2 {
			t.Errorf("host %s was asked %v, want a and b", h, got)
		}
	}
	if got := f.callsTo("h4"); len(got) > 0 {
		t.Errorf("h4 was asked %v through a connection that failed", got)
	}
	hr := hostResult(t, res, "h4")
	if hr.Result != HostFailed || hr.Batch != 2 || !strings.Contains(hr.Slots[0].Error, ErrUnreachable.Error()) {
		t.Errorf("h4: %+v, want failed in batch 2 as unreachable", hr)
	}
	checkAllClosed(t, f)
}

func TestAResumeDialsOnlyTheHostsLeftKeepingTheFirstBatchLeftFromItsPreflight(t *testing.T) {
	f := newFleet(t, 6, "a", "b")
	path := statePath(t)
	e := f.executor()
	e.StateFile = path
	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	if _, err := e.Run(ctx, hostNames(6), []string{"a", "b"}, mustStrategy(t, "2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	checkAllClosed(t, f)
	before := map[string]int{}
	for _, h := range hostNames(6) {
		before[h], _ = f.dialsOf(h)
	}
	st, err := LoadResumable(path, "")
	if err != nil {
		t.Fatal(err)
	}
	e = f.executor()
	e.StateFile = path
	if _, err := e.Resume(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	// h1, h2: finished; h3, h4: batch 2, the first left, keep their
	// preflight connection; h5, h6: dialled again for batch 3.
	for h, want := range map[string]int{"h1": 0, "h2": 0, "h3": 1, "h4": 1, "h5": 2, "h6": 2} {
		if d, _ := f.dialsOf(h); d-before[h] != want {
			t.Errorf("the resume dialled %s %d times, want %d", h, d-before[h], want)
		}
	}
	checkAllClosed(t, f)
}

type blackholeConn struct{ *fakeConn }

func (c blackholeConn) Connect(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// A rollout stopped by max_failures after batch 1 returns without waiting for
// the pre-dial of batch 2 (which never runs) to time out on every host.
func TestARunStoppedAfterBatch1DoesNotWaitForThePreDialOfBatch2(t *testing.T) {
	f := newFleet(t, 4, "a")
	f.host("h1").fail["a"] = true
	e := f.executor()
	e.ConnectTimeout = 2 * time.Second
	var preflightDone atomic.Bool
	e.Dial = func(ctx context.Context, h string) (Agent, error) {
		a, err := f.dial(ctx, h)
		if err != nil || !preflightDone.Load() || (h != "h3" && h != "h4") {
			return a, err
		}
		return blackholeConn{a.(*fakeConn)}, nil
	}
	e.Events = func(ev Event) {
		if ev.Kind == EventBatchStart {
			preflightDone.Store(true)
		}
	}
	t0 := time.Now()
	res, _ := e.Run(t.Context(), hostNames(4), []string{"a"}, mustStrategy(t, "2"))
	took := time.Since(t0)
	t.Logf("stopped: %q; Run took %v", res.Stopped, took)
	if res.Stopped == "" || res.Batches[1].Run {
		t.Fatalf("want a stop after batch 1: %+v", res.Batches)
	}
	if took > time.Second {
		t.Errorf("Run took %v after the rollout stopped: it waited for the pre-dial of a batch that never runs", took)
	}
}

func TestAHostWhosePreDialFailedOnceIsDialledAgainWhenItsBatchStarts(t *testing.T) {
	f := newFleet(t, 6, "a", "b")
	for _, a := range f.hosts {
		a.delay = 20 * time.Millisecond
	}
	f.host("h4").refuseConnects = 1 // the pre-dial, during batch 1's last step
	res, err := f.executor().Run(t.Context(), hostNames(6), []string{"a", "b"}, mustStrategy(t, "2"))
	if err != nil {
		t.Fatalf("a blip during the pre-dial failed the rollout: %v", err)
	}
	if hr := hostResult(t, res, "h4"); hr.Result != HostDone {
		t.Errorf("h4: %+v, want done", hr)
	}
	f.mu.Lock()
	connects := f.connects["h4"]
	f.mu.Unlock()
	if connects != 2 {
		t.Errorf("h4 was connected %d times, want 2 (the failed pre-dial, then its batch's)", connects)
	}
	checkAllClosed(t, f)
}
