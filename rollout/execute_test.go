package rollout

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestARolloutReplacesEverySlotBatchByBatchOneSlotPerHostAtATime(t *testing.T) {
	f := newFleet(t, 10, "a", "b", "c")
	for _, a := range f.hosts {
		a.delay = 10 * time.Millisecond
	}
	var rec recorder
	e := f.executor()
	e.Events = rec.add
	res, err := e.Run(t.Context(), hostNames(10), []string{"a", "b", "c"}, mustStrategy(t, "35%"))
	if err != nil {
		t.Fatal(err)
	}
	if f.maxActive != 4 {
		t.Errorf("at most %d hosts at once, want 4 (35%% of 10)", f.maxActive)
	}
	if len(f.overlaps) > 0 {
		t.Errorf("hosts asked for two slots at once: %v", f.overlaps)
	}
	// Slot-major: the calls come in groups of one step each, in plan order.
	calls := f.allCalls()
	i := 0
	for _, b := range res.Plan.Batches {
		for _, st := range b.Steps {
			var hosts []string
			for _, c := range calls[i : i+len(st.Hosts)] {
				if c.slot != st.Slot {
					t.Fatalf("call %d is slot %s, want %s (step of %v)", i, c.slot, st.Slot, st.Hosts)
				}
				hosts = append(hosts, c.host)
			}
			slices.Sort(hosts)
			want := slices.Sorted(slices.Values(st.Hosts))
			if !reflect.DeepEqual(hosts, want) {
				t.Fatalf("step %s called %v, want %v", st.Slot, hosts, want)
			}
			i += len(st.Hosts)
		}
	}
	if res.Totals != (Totals{Hosts: 10, Done: 10}) {
		t.Errorf("totals %+v", res.Totals)
	}
	if len(res.Batches) != 3 || !res.Batches[2].Run || res.Batches[2].Hosts != 2 {
		t.Errorf("batches %+v", res.Batches)
	}
	// The first batch keeps the connection of its preflight; the others
	// are dialled again for their batch. Every connection is closed.
	for i, h := range hostNames(10) {
		want := 2
		if i < 4 {
			want = 1
		}
		if f.dials[h] != want || f.closed[h] != want {
			t.Errorf("host %s dialled %d times and closed %d times, want %d", h, f.dials[h], f.closed[h], want)
		}
	}
	if n := len(rec.kinds(EventSlotDone)); n != 30 {
		t.Errorf("%d slot_done events, want 30", n)
	}
	if n := len(rec.kinds(EventPhase)); n != 30 {
		t.Errorf("%d phase events, want 30", n)
	}
	if n := len(rec.kinds(EventBatchStart)); n != 3 {
		t.Errorf("%d batch_start events, want 3", n)
	}
}

func TestAFailingSlotStopsItsHostAndTheRolloutAfterTheBatch(t *testing.T) {
	f := newFleet(t, 6, "a", "b", "c")
	f.host("h2").fail["b"] = true
	res, err := f.executor().Run(t.Context(), hostNames(6), []string{"a", "b", "c"}, mustStrategy(t, "2"))
	if !errors.Is(err, ErrFailed) || !errors.Is(err, ErrSlotFailed) || !strings.Contains(err.Error(), "host h2 slot b") {
		t.Fatalf("got %v, want ErrFailed naming host h2 slot b", err)
	}
	if got := f.callsTo("h2"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("h2 was asked for %v, want a, b and not c", got)
	}
	if got := f.callsTo("h1"); len(got) != 3 {
		t.Errorf("h1 was asked for %v, want every slot: its batch goes on", got)
	}
	for _, h := range []string{"h3", "h4", "h5", "h6"} {
		if got := f.callsTo(h); len(got) > 0 {
			t.Errorf("%s was asked for %v after a failed batch", h, got)
		}
		if hr := hostResult(t, res, h); hr.Result != HostNotRun {
			t.Errorf("%s result %s, want not_run", h, hr.Result)
		}
	}
	h2 := hostResult(t, res, "h2")
	if h2.Result != HostFailed || h2.Slots[1].Result != ResultRolledBack || h2.Slots[2].Result != ResultNotRun {
		t.Errorf("h2 %+v", h2)
	}
	if res.Totals != (Totals{Hosts: 6, Done: 1, Failed: 1, NotRun: 4}) || res.Stopped == "" {
		t.Errorf("totals %+v, stopped %q", res.Totals, res.Stopped)
	}
	if res.Batches[1].Run || res.Batches[2].Run {
		t.Errorf("batches after the failure ran: %+v", res.Batches)
	}
}

func TestMaxFailuresLetsTheRolloutGoOnUntilItIsExceeded(t *testing.T) {
	for _, tc := range []struct {
		max     string
		batches int // batches run
	}{
		{"0", 1},
		{"1", 2},
		{"2", 3},
		{"20%", 2}, // 1 of 6 is under 20%, 2 of 6 is over
		{"34%", 3},
	} {
		t.Run("max failures "+tc.max, func(t *testing.T) {
			f := newFleet(t, 6, "a")
			f.host("h1").fail["a"] = true
			f.host("h3").fail["a"] = true
			e := f.executor()
			th, err := ParseMaxFailures(tc.max)
			if err != nil {
				t.Fatal(err)
			}
			e.MaxFailures = th
			res, err := e.Run(t.Context(), hostNames(6), []string{"a"}, mustStrategy(t, "2"))
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("got %v, want ErrFailed: hosts failed even when tolerated", err)
			}
			run := 0
			for _, b := range res.Batches {
				if b.Run {
					run++
				}
			}
			if run != tc.batches {
				t.Errorf("%d batches ran, want %d (stopped %q)", run, tc.batches, res.Stopped)
			}
		})
	}
}

func TestAnUnreachableHostFailsTheRolloutBeforeAnyHostIsTouched(t *testing.T) {
	for name, breakHost := range map[string]func(*fakeAgent){
		"refused":          func(a *fakeAgent) { a.unreachable = true },
		"no answer":        func(a *fakeAgent) { a.blackhole = true },
		"busy":             func(a *fakeAgent) { a.busy = "redeploy by alice of app:v3" },
		"lacking the slot": func(a *fakeAgent) { a.slots = []string{"a"} },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, 5, "a", "b")
			breakHost(f.host("h4"))
			e := f.executor()
			e.ConnectTimeout = 50 * time.Millisecond
			res, err := e.Run(t.Context(), hostNames(5), []string{"a", "b"}, mustStrategy(t, "1"))
			if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "host h4") {
				t.Fatalf("got %v, want ErrPreflight naming h4", err)
			}
			if calls := f.allCalls(); len(calls) > 0 {
				t.Fatalf("hosts were touched: %v", calls)
			}
			if res.Totals.NotRun != 5 {
				t.Errorf("totals %+v, want every host not run", res.Totals)
			}
			for h, n := range f.dials {
				if f.closed[h] != n {
					t.Errorf("host %s: %d connections, %d closed", h, n, f.closed[h])
				}
			}
		})
	}
}

func TestSkipUnreachableLeavesUnansweringHostsOut(t *testing.T) {
	f := newFleet(t, 5, "a")
	f.host("h2").unreachable = true
	f.host("h5").blackhole = true
	e := f.executor()
	e.ConnectTimeout = 50 * time.Millisecond
	e.SkipUnreachable = true
	var rec recorder
	e.Events = rec.add
	res, err := e.Run(t.Context(), hostNames(5), []string{"a"}, mustStrategy(t, "100%"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals != (Totals{Hosts: 5, Done: 3, Skipped: 2}) {
		t.Errorf("totals %+v", res.Totals)
	}
	if got := res.Plan.Batches[0].Hosts; !reflect.DeepEqual(got, []string{"h1", "h3", "h4"}) {
		t.Errorf("planned %v", got)
	}
	if hr := hostResult(t, res, "h2"); hr.Result != HostSkipped || !strings.Contains(hr.Error, "unreachable") {
		t.Errorf("h2 %+v", hr)
	}
	if n := len(rec.kinds(EventSkipped)); n != 2 {
		t.Errorf("%d skipped events, want 2", n)
	}
}

func TestABusyHostIsNotSkippedEvenWithSkipUnreachable(t *testing.T) {
	f := newFleet(t, 2, "a")
	f.host("h2").busy = "redeploy by bob"
	e := f.executor()
	e.SkipUnreachable = true
	if _, err := e.Run(t.Context(), hostNames(2), nil, mustStrategy(t, "1")); !errors.Is(err, ErrBusy) || !errors.Is(err, ErrPreflight) {
		t.Fatalf("got %v, want ErrPreflight wrapping ErrBusy", err)
	}
}

func TestSlotsDefaultToThoseTheFirstHostReports(t *testing.T) {
	f := newFleet(t, 3, "web-1", "web-2")
	res, err := f.executor().Run(t.Context(), hostNames(3), nil, mustStrategy(t, "3"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Slots, []string{"web-1", "web-2"}) || !reflect.DeepEqual(f.callsTo("h3"), res.Slots) {
		t.Fatalf("slots %v, h3 called for %v", res.Slots, f.callsTo("h3"))
	}

	f = newFleet(t, 3, "web-1", "web-2")
	f.host("h3").slots = []string{"web-1"}
	if _, err := f.executor().Run(t.Context(), hostNames(3), nil, mustStrategy(t, "3")); !errors.Is(err, ErrMissingSlot) || !strings.Contains(err.Error(), "web-2") {
		t.Fatalf("got %v, want ErrMissingSlot naming web-2", err)
	}
}

func TestAHangingAgentIsFailedAtTheStepTimeout(t *testing.T) {
	for _, early := range []string{"", "deadline exceeded", "canceled"} {
		t.Run(fmt.Sprintf("deadline answered by the agent first with %q", early), func(t *testing.T) {
			testAHangingAgentIsFailedAtTheStepTimeout(t, early)
		})
	}
}

func testAHangingAgentIsFailedAtTheStepTimeout(t *testing.T, early string) {
	f := newFleet(t, 3, "a", "b")
	f.earlyDeadline, f.earlyCancel = early == "deadline exceeded", early == "canceled"
	f.host("h2").hang["a"] = true
	e := f.executor()
	e.StepTimeout = 100 * time.Millisecond
	start := time.Now()
	res, err := e.Run(t.Context(), hostNames(3), []string{"a", "b"}, mustStrategy(t, "3"))
	if !errors.Is(err, ErrStepTimeout) || !strings.Contains(err.Error(), "host h2 slot a") {
		t.Fatalf("got %v, want ErrStepTimeout for h2", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
	h2 := hostResult(t, res, "h2")
	if h2.Result != HostFailed || h2.Slots[0].Result != ResultError || h2.Slots[1].Result != ResultNotRun {
		t.Errorf("h2 %+v", h2)
	}
	if hr := hostResult(t, res, "h1"); hr.Result != HostDone {
		t.Errorf("h1 %+v: the other hosts of the step go on", hr)
	}
}

func TestCancellingTheContextStartsNoFurtherStep(t *testing.T) {
	f := newFleet(t, 4, "a", "b")
	for _, a := range f.hosts {
		a.delay = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f.onCall = func(call) { cancel() }
	start := time.Now()
	res, err := f.executor().Run(ctx, hostNames(4), []string{"a", "b"}, mustStrategy(t, "2"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s to stop", d)
	}
	for _, c := range f.allCalls() {
		if c.slot != "a" || (c.host != "h1" && c.host != "h2") {
			t.Errorf("called %v after the cancellation", c)
		}
	}
	if res.Batches[1].Run || !strings.HasPrefix(res.Stopped, "cancelled") {
		t.Errorf("batches %+v, stopped %q", res.Batches, res.Stopped)
	}
}

func TestRunRefusesDuplicateHosts(t *testing.T) {
	f := newFleet(t, 2, "a")
	if _, err := f.executor().Run(t.Context(), []string{"h1", "h1"}, nil, mustStrategy(t, "1")); !errors.Is(err, ErrInvalidPlan) {
		t.Fatalf("got %v", err)
	}
}

func TestCheckAsksEveryHostItsStatusAndTouchesNothing(t *testing.T) {
	f := newFleet(t, 4, "a", "b")
	f.host("h3").unreachable = true
	e := f.executor()
	e.SkipUnreachable = true
	ready, slots, err := e.Check(t.Context(), hostNames(4), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ready, []string{"h1", "h2", "h4"}) || !reflect.DeepEqual(slots, []string{"a", "b"}) {
		t.Fatalf("ready %v, slots %v", ready, slots)
	}
	if len(f.allCalls()) > 0 || f.closed["h1"] != 1 {
		t.Fatalf("calls %v, closed %v", f.allCalls(), f.closed)
	}
}
