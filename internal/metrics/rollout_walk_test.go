package metrics

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/haroll/haroll/rollout"
)

// walkingRollout is Rollout as it was before its host counts were kept
// incrementally: every event walked every host. It is the reference the
// constant-time Rollout must agree with, metric for metric.
type walkingRollout struct {
	*Rollout
	mu    sync.Mutex
	state map[string]string
}

func newWalkingRollout(reg prometheus.Registerer, hosts []string) *walkingRollout {
	w := &walkingRollout{Rollout: NewRollout(reg, nil), state: make(map[string]string, len(hosts))}
	for _, h := range hosts {
		w.state[h] = hostPending
	}
	w.updateHosts()
	return w
}

func (r *walkingRollout) Event(e rollout.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Kind {
	case rollout.EventSkipped:
		r.state[e.Host] = rollout.HostSkipped
	case rollout.EventBatchStart:
		r.batch.Set(float64(e.Batch))
		r.batches.Set(float64(e.Batches))
	case rollout.EventStepEnd:
		r.steps.Observe(e.Duration.Seconds())
	case rollout.EventSlotDone:
		r.slotsDone.WithLabelValues(e.Result).Inc()
		switch {
		case e.Result != rollout.ResultReplaced && e.Result != rollout.ResultSkipped:
			r.state[e.Host] = rollout.HostFailed
		case r.state[e.Host] == rollout.HostFailed:
		case e.Step == e.Steps:
			r.state[e.Host] = rollout.HostDone
		default:
			r.state[e.Host] = hostRunning
		}
	default:
		return
	}
	r.updateHosts()
}

func (r *walkingRollout) Finish(res rollout.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range res.Hosts {
		r.state[h.Host] = h.Result
	}
	r.updateHosts()
	r.finished.Set(1)
}

func (r *walkingRollout) updateHosts() {
	counts := make(map[string]int, len(hostStates))
	for _, s := range r.state {
		counts[s]++
	}
	for _, s := range hostStates {
		r.hosts.WithLabelValues(s).Set(float64(counts[s]))
	}
}

// exposition is what a scrape of g reads.
func exposition(t testing.TB, g prometheus.Gatherer) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// scriptedRollout is a rollout of 10 hosts in 3 batches of 2 slots with
// every kind of event: a host left out, phases, slots replaced, skipped,
// rolled back and lost, a failed host asked again, a host outside the
// inventory, a canary's analysis and rollback, and a result that marks the
// last batch not run.
func scriptedRollout() (hosts []string, events []rollout.Event, res rollout.Result) {
	for i := range 10 {
		hosts = append(hosts, fmt.Sprintf("h%d:7441", i))
	}
	events = append(events, rollout.Event{Kind: rollout.EventSkipped, Host: "h9:7441", Err: "unreachable"})
	batches := [][]string{hosts[0:2], hosts[2:6]}
	results := map[string][2]string{
		"h1:7441": {rollout.ResultRolledBack, rollout.ResultReplaced}, // failed, then "replaced": stays failed
		"h3:7441": {rollout.ResultSkipped, rollout.ResultError},
		"h4:7441": {rollout.ResultReplaced, rollout.ResultSkipped},
	}
	for bi, b := range batches {
		pos := rollout.Event{Batch: bi + 1, Batches: 3, Steps: 2, Canary: bi == 0}
		start := pos
		start.Kind, start.Hosts = rollout.EventBatchStart, len(b)
		events = append(events, start)
		for si, slot := range []string{"web", "api"} {
			step := pos
			step.Step, step.Slot = si+1, slot
			ev := step
			ev.Kind, ev.Hosts = rollout.EventStepStart, len(b)
			events = append(events, ev)
			for _, h := range b {
				ph := step
				ph.Kind, ph.Host, ph.Phase, ph.Duration = rollout.EventPhase, h, "drain", time.Second
				events = append(events, ph)
				done := step
				done.Kind, done.Host, done.Result, done.Duration = rollout.EventSlotDone, h, rollout.ResultReplaced, 2*time.Second
				if r, ok := results[h]; ok {
					done.Result = r[si]
				}
				events = append(events, done)
			}
			end := step
			end.Kind, end.Hosts, end.Duration = rollout.EventStepEnd, len(b), time.Duration(3+si)*time.Second
			events = append(events, end)
		}
		if bi == 0 {
			events = append(events,
				rollout.Event{Kind: rollout.EventCanaryAnalysis, Batch: 1, Batches: 3, Canary: true, Hosts: 2, Detail: "30s"},
				rollout.Event{Kind: rollout.EventCanaryRollback, Batch: 1, Batches: 3, Canary: true, Host: "h0:7441", Slot: "web", Result: rollout.ResultReplaced})
		}
		bend := pos
		bend.Kind, bend.Hosts, bend.Duration = rollout.EventBatchEnd, len(b), 9*time.Second
		events = append(events, bend)
	}
	events = append(events, rollout.Event{Kind: rollout.EventSlotDone, Batch: 2, Step: 2, Steps: 2, Host: "stranger:1", Result: rollout.ResultReplaced})
	for i, h := range hosts {
		r := rollout.HostDone
		switch {
		case h == "h1:7441" || h == "h3:7441":
			r = rollout.HostFailed
		case h == "h9:7441":
			r = rollout.HostSkipped
		case i >= 6:
			r = rollout.HostNotRun
		}
		res.Hosts = append(res.Hosts, rollout.HostResult{Host: h, Result: r})
	}
	return hosts, events, res
}

func TestTheConstantTimeMetricsReadAsTheWalkingOnesAfterEveryEvent(t *testing.T) {
	hosts, events, res := scriptedRollout()
	fastReg, walkReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	fast, walk := NewRollout(fastReg, hosts), newWalkingRollout(walkReg, hosts)
	if got, want := exposition(t, fastReg), exposition(t, walkReg); got != want {
		t.Fatalf("before any event:\n%s\nwant\n%s", got, want)
	}
	for i, e := range events {
		fast.Event(e)
		walk.Event(e)
		if got, want := exposition(t, fastReg), exposition(t, walkReg); got != want {
			t.Fatalf("after event %d (%s %s %s):\n%s\nwant\n%s", i, e.Kind, e.Host, e.Result, got, want)
		}
	}
	fast.Finish(res)
	walk.Finish(res)
	if got, want := exposition(t, fastReg), exposition(t, walkReg); got != want {
		t.Fatalf("after Finish:\n%s\nwant\n%s", got, want)
	}
}

// BenchmarkRolloutMetricsEventAt10000Hosts measures one slot_done at
// 10,000 hosts: constant time now, a walk of every host before.
func BenchmarkRolloutMetricsEventAt10000Hosts(b *testing.B) {
	hosts := make([]string, 10000)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host-%05d:7441", i)
	}
	for _, bc := range []struct {
		name  string
		event func(rollout.Event)
	}{
		{"constant", NewRollout(prometheus.NewRegistry(), hosts).Event},
		{"walking", newWalkingRollout(prometheus.NewRegistry(), hosts).Event},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := rollout.Event{Kind: rollout.EventSlotDone, Batch: 1, Batches: 10, Step: 1, Steps: 3, Result: rollout.ResultReplaced}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.Host = hosts[i%len(hosts)]
				bc.event(e)
				i++
			}
		})
	}
}
