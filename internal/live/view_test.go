package live

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/rollout"
)

// fourHosts plays a rollout of 4 hosts, a canary then a batch of 3, up to
// the middle of the second batch's first step.
func fourHosts(t *testing.T) (*Tracker, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	hosts := []string{"a:7441", "b:7441", "c:7441", "d:7441"}
	tr := newTracker("registry.example/app:v2", hosts, []string{"web", "api"}, clock.Now)
	f := &feeder{t: t, send: tr.Event, clock: clock, batches: 2, slots: []string{"web", "api"}}
	tr.Event(rollout.Event{Kind: rollout.EventHook, Phase: "pre", Duration: 1200 * time.Millisecond})
	clock.Add(2 * time.Second)
	pos := f.batch(1, true, 1)
	f.fullStep(pos, 1, hosts[:1], nil, 10*time.Second)
	f.fullStep(pos, 2, hosts[:1], nil, 20*time.Second)
	tr.Event(rollout.Event{Kind: rollout.EventCanaryPassed, Batch: 1, Batches: 2, Canary: true, Hosts: 1, Detail: "5xx 0.0% <= 1.0%"})
	f.batchEnd(pos, 1, 0)
	pos = f.batch(2, false, 3)
	step := f.stepStart(pos, 1, 3)
	f.phase(step, "b:7441", "drain")
	f.phase(step, "b:7441", "boot")
	f.phase(step, "c:7441", "drain")
	f.slotDone(step, "b:7441", rollout.ResultRolledBack, "boot: not healthy within 30s")
	clock.Add(4 * time.Second)
	return tr, clock
}

func TestTheViewOfFourHostsNamesTheStepItsPhasesAndTheFailure(t *testing.T) {
	tr, _ := fourHosts(t)
	got := render(tr.Snapshot(), plainStyles())
	// Two steps ended, 15s on average; the running one has 11s left of
	// that, and the batch's last step one more: 26s.
	want := `rollout of registry.example/app:v2 · 4 hosts · elapsed 36s · ETA 26s
batches  1/2 done · batch 2/2 · 3 hosts
step     1/2 web · 3 hosts · 4s
phases   drain 1 · done 0 · failed 1 · no phase yet 1
hosts    1 done · 1 failed · 2 to go
failures b:7441: web: boot: not healthy within 30s
canary   passed: 5xx 0.0% <= 1.0%
hook     pre 1.2s ok
`
	if got != want {
		t.Errorf("view:\n%s\nwant:\n%s", got, want)
	}
}

func TestTheETAIsADashUntilAStepEnded(t *testing.T) {
	clock := newFakeClock()
	tr := newTracker("app:v2", fleet(4), []string{"web"}, clock.Now)
	f := &feeder{t: t, send: tr.Event, clock: clock, batches: 1, slots: []string{"web"}}
	f.stepStart(f.batch(1, false, 4), 1, 4)
	clock.Add(3 * time.Second)
	head, _, _ := strings.Cut(render(tr.Snapshot(), plainStyles()), "\n")
	if !strings.HasSuffix(head, "elapsed 3s · ETA —") {
		t.Errorf("header %q, want the elapsed time and a dash for the ETA", head)
	}
}

func TestTheViewBeforeTheFirstBatchSaysThePreflightRuns(t *testing.T) {
	tr := newTracker("app:v2", fleet(3), []string{"web"}, newFakeClock().Now)
	tr.Event(rollout.Event{Kind: rollout.EventSkipped, Host: "host-00002:7441", Err: "unreachable"})
	got := render(tr.Snapshot(), plainStyles())
	for _, want := range []string{"batches  preflight", "hosts    0 done · 0 failed · 2 to go · 1 skipped (unreachable)\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("view lacks %q:\n%s", want, got)
		}
	}
}

// tenThousand plays 10,000 hosts in a canary of 100 and 10 batches of
// 990, 3 slots each, up to the middle of batch 4's second step, with 12
// failed slots so far.
func tenThousand(t testing.TB, send func(rollout.Event), clock *fakeClock) {
	hosts := fleet(10000)
	slots := []string{"web", "api", "worker"}
	f := &feeder{send: send, clock: clock, batches: 11, slots: slots}
	failures := map[string]string{}
	for i := range 12 {
		failures[hosts[150+i*17]] = rollout.ResultRolledBack
	}
	failures[hosts[160]] = rollout.ResultSkipped // already on the image
	batch := func(b int) []string {
		if b == 1 {
			return hosts[:100]
		}
		return hosts[100+(b-2)*990 : 100+(b-1)*990]
	}
	for b := 1; b <= 3; b++ {
		pos := f.batch(b, b == 1, len(batch(b)))
		asked := batch(b)
		for s := 1; s <= 3; s++ {
			f.fullStep(pos, s, asked, failures, 40*time.Second)
			var next []string
			for _, h := range asked {
				if r := failures[h]; r == "" || r == rollout.ResultSkipped {
					next = append(next, h)
				}
			}
			asked = next
		}
		if b == 1 {
			send(rollout.Event{Kind: rollout.EventCanaryPaused, Batch: 1, Batches: 11, Canary: true, Hosts: 100,
				Detail: "waiting for `haroll rollout promote` or `haroll rollout abort`"})
			clock.Add(time.Minute)
			send(rollout.Event{Kind: rollout.EventCanaryPromoted, Batch: 1, Batches: 11, Canary: true, Hosts: 100, Detail: "100 host(s) at their whole weight"})
		}
		f.batchEnd(pos, len(batch(b)), 0)
	}
	pos := f.batch(4, false, 990)
	b4 := batch(4)
	f.fullStep(pos, 1, b4, nil, 40*time.Second)
	step := f.stepStart(pos, 2, 990)
	for i, h := range b4 {
		switch {
		case i < 800:
			f.phase(step, h, "drain")
			f.phase(step, h, "boot")
			f.phase(step, h, "gate")
			f.slotDone(step, h, rollout.ResultReplaced, "")
		case i < 803:
			f.phase(step, h, "drain")
			f.slotDone(step, h, rollout.ResultRolledBack, "drain: timeout after 30s: 4 sessions left")
		case i < 843:
			f.phase(step, h, "drain")
			f.phase(step, h, "boot")
		case i < 963:
			f.phase(step, h, "drain")
		}
	}
	clock.Add(25 * time.Second)
}

func TestTheViewOfTenThousandHostsCountsThePhasesAndNamesTheLastFailures(t *testing.T) {
	clock := newFakeClock()
	tr := newTracker("registry.example/app:v2", fleet(10000), []string{"web", "api", "worker"}, clock.Now)
	tenThousand(t, tr.Event, clock)
	got := render(tr.Snapshot(), plainStyles())
	if path := os.Getenv("HAROLL_LIVE_SCREEN"); path != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// 10 steps ended, 40s each; 15s left of the running one, then 1 more
	// in batch 4 and 3 in each of the 7 batches after it: 22 × 40s + 15s.
	want := `rollout of registry.example/app:v2 · 10,000 hosts · elapsed 8m05s · ETA 14m55s
batches  3/11 done · batch 4/11 · 990 hosts
step     2/3 api · 990 hosts · 25s
phases   drain 120 · boot 40 · done 800 · failed 3 · no phase yet 27
hosts    2,068 done · 15 failed · 7,917 to go
failures host-00320:7441: web: boot: health check failed: connection refused
         host-00337:7441: web: boot: health check failed: connection refused
         host-02880:7441: api: drain: timeout after 30s: 4 sessions left
         host-02881:7441: api: drain: timeout after 30s: 4 sessions left
         host-02882:7441: api: drain: timeout after 30s: 4 sessions left
         +10 more
canary   promoted: 100 host(s) at their whole weight
`
	if got != want {
		t.Errorf("view:\n%s\nwant:\n%s", got, want)
	}
}

func TestDurationsAndCountsReadAsAPersonWritesThem(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond: "850ms", 12340 * time.Millisecond: "12.3s", 245 * time.Second: "4m05s",
		62*time.Minute + 20*time.Second: "1h02m", 26 * time.Hour: "26h00m",
	} {
		if got := clock(d); got != want {
			t.Errorf("clock(%s) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPhasesBeyondTheCountedOnesAreCountedAsOther(t *testing.T) {
	clock := newFakeClock()
	hosts := fleet(40)
	tr := newTracker("app:v2", hosts, []string{"web"}, clock.Now)
	f := &feeder{t: t, send: tr.Event, clock: clock, batches: 1, slots: []string{"web"}}
	step := f.stepStart(f.batch(1, false, 40), 1, 40)
	for i, h := range hosts {
		f.phase(step, h, fmt.Sprintf("custom_%02d", i))
	}
	s := tr.Snapshot()
	total := 0
	for _, n := range s.PhaseCounts {
		total += n
	}
	if total != 40 || len(s.PhaseNames) != maxPhases {
		t.Fatalf("%d hosts counted over %d phase names, want 40 over %d", total, len(s.PhaseNames), maxPhases)
	}
	if got := render(s, plainStyles()); !strings.Contains(got, "custom_13 1 · other 26 · done 0") {
		t.Errorf("view:\n%s", got)
	}
}

func TestCanaryHostsRolledBackCountAsFailedNotDone(t *testing.T) {
	clock := newFakeClock()
	hosts := fleet(4)
	tr := newTracker("app:v2", hosts, []string{"web"}, clock.Now)
	f := &feeder{t: t, send: tr.Event, clock: clock, batches: 2, slots: []string{"web"}}
	pos := f.batch(1, true, 2)
	f.fullStep(pos, 1, hosts[:2], nil, time.Second)
	if s := tr.Snapshot(); s.HostsDone != 2 {
		t.Fatalf("%d hosts done after the canary's last step, want 2", s.HostsDone)
	}
	tr.Event(rollout.Event{Kind: rollout.EventCanaryFailed, Batch: 1, Batches: 2, Canary: true, Hosts: 2, Detail: "5xx 4.0% > 1.0%"})
	for _, h := range hosts[:2] {
		tr.Event(rollout.Event{Kind: rollout.EventCanaryRollback, Batch: 1, Batches: 2, Canary: true, Host: h, Slot: "web",
			Result: rollout.ResultRolledBack, Detail: "back to app:v1"})
	}
	got := render(tr.Snapshot(), plainStyles())
	for _, want := range []string{"hosts    0 done · 2 failed · 2 to go\n", "canary   failed: 5xx 4.0% > 1.0% · 2 slot(s) rolled back\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("view lacks %q:\n%s", want, got)
		}
	}
}

func TestTrackerEventAllocatesNothingPerEvent(t *testing.T) {
	var events []rollout.Event
	tenThousand(t, func(e rollout.Event) { events = append(events, e) }, newFakeClock())
	tr := NewTracker("app:v2", fleet(10000), []string{"web", "api", "worker"})
	i := 0
	if n := testing.AllocsPerRun(len(events), func() { tr.Event(events[i%len(events)]); i++ }); n != 0 {
		t.Errorf("%v allocations per event, want 0", n)
	}
}

// The fleet operations' progress has a line of its own: the prepull's
// count, then an on_failure pause, and their failures among the failures.
func TestTheViewShowsThePrepullAndAnOnFailurePause(t *testing.T) {
	tr := NewTracker("app:v2", []string{"h1", "h2"}, []string{"web"})
	tr.Event(rollout.Event{Kind: rollout.EventPrepull, Host: "h1", Hosts: 1, Steps: 2, Detail: "app:v2 pulled in 1s"})
	tr.Event(rollout.Event{Kind: rollout.EventPrepull, Host: "h2", Hosts: 1, Steps: 2, Err: "host h2: image app:v2: not found"})
	out := render(tr.Snapshot(), noStyles())
	for _, want := range []string{"fleet", "prepull: 1 of 2 host(s) have the image", "h2: prepull: host h2: image app:v2: not found"} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %q:\n%s", want, out)
		}
	}
	tr.Event(rollout.Event{Kind: rollout.EventPaused, Detail: "1 of 2 hosts failed"})
	if out := render(tr.Snapshot(), noStyles()); !strings.Contains(out, "on_failure pause: 1 of 2 hosts failed") {
		t.Errorf("view lacks the pause:\n%s", out)
	}
}
