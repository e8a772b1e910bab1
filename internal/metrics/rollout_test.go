package metrics

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haroll/haroll/rollout"
)

func hostsWant(pending, running, done, failed, notRun, skipped int) string {
	return `
# HELP haroll_rollout_hosts Hosts of the rollout by state: pending, running, done, failed, not_run (batch not started), skipped (unreachable). Exact once haroll_rollout_finished is 1.
# TYPE haroll_rollout_hosts gauge
haroll_rollout_hosts{result="done"} ` + itoa(done) + `
haroll_rollout_hosts{result="failed"} ` + itoa(failed) + `
haroll_rollout_hosts{result="not_run"} ` + itoa(notRun) + `
haroll_rollout_hosts{result="pending"} ` + itoa(pending) + `
haroll_rollout_hosts{result="running"} ` + itoa(running) + `
haroll_rollout_hosts{result="skipped"} ` + itoa(skipped) + `
`
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestTheRolloutIsFollowedFromItsEvents(t *testing.T) {
	m := NewRollout(prometheus.NewRegistry(), []string{"a:1", "b:1", "c:1", "d:1"})
	if err := testutil.CollectAndCompare(m.hosts, strings.NewReader(hostsWant(4, 0, 0, 0, 0, 0))); err != nil {
		t.Fatal(err)
	}
	pos := rollout.Event{Batch: 1, Batches: 2, Steps: 2}
	for _, e := range []rollout.Event{
		{Kind: rollout.EventSkipped, Host: "d:1", Err: "unreachable"},
		{Kind: rollout.EventBatchStart, Batch: 1, Batches: 2, Hosts: 2, Steps: 2},
		{Kind: rollout.EventPhase, Host: "a:1", Phase: "drain", Duration: time.Second},
		with(pos, rollout.EventSlotDone, 1, "a:1", rollout.ResultReplaced),
		with(pos, rollout.EventSlotDone, 1, "b:1", rollout.ResultReplaced),
		{Kind: rollout.EventStepEnd, Batch: 1, Step: 1, Steps: 2, Duration: 4 * time.Second},
		with(pos, rollout.EventSlotDone, 2, "a:1", rollout.ResultSkipped),
		with(pos, rollout.EventSlotDone, 2, "b:1", rollout.ResultRolledBack),
		{Kind: rollout.EventStepEnd, Batch: 1, Step: 2, Steps: 2, Duration: 40 * time.Second, Failed: 1},
	} {
		m.Event(e)
		if e.Kind == rollout.EventSlotDone && e.Host == "b:1" && e.Step == 1 {
			if err := testutil.CollectAndCompare(m.hosts, strings.NewReader(hostsWant(1, 2, 0, 0, 0, 1))); err != nil {
				t.Fatalf("after step 1: %v", err)
			}
		}
	}
	if err := testutil.CollectAndCompare(m.hosts, strings.NewReader(hostsWant(1, 0, 1, 1, 0, 1))); err != nil {
		t.Fatal(err)
	}
	if b, n := testutil.ToFloat64(m.batch), testutil.ToFloat64(m.batches); b != 1 || n != 2 {
		t.Errorf("batch %v of %v, want 1 of 2", b, n)
	}
	for res, want := range map[string]float64{rollout.ResultReplaced: 2, rollout.ResultSkipped: 1, rollout.ResultRolledBack: 1, rollout.ResultError: 0} {
		if got := testutil.ToFloat64(m.slotsDone.WithLabelValues(res)); got != want {
			t.Errorf("slots done %s = %v, want %v", res, got, want)
		}
	}
	if got := testutil.CollectAndCount(m.steps); got != 1 {
		t.Errorf("%d step histograms", got)
	}
	if got := testutil.ToFloat64(m.finished); got != 0 {
		t.Errorf("finished = %v before Finish", got)
	}

	// The failure stopped the rollout: c's batch never ran.
	m.Finish(rollout.Result{Hosts: []rollout.HostResult{
		{Host: "a:1", Result: rollout.HostDone}, {Host: "b:1", Result: rollout.HostFailed},
		{Host: "c:1", Result: rollout.HostNotRun}, {Host: "d:1", Result: rollout.HostSkipped},
	}})
	if err := testutil.CollectAndCompare(m.hosts, strings.NewReader(hostsWant(0, 0, 1, 1, 1, 1))); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.finished); got != 1 {
		t.Errorf("finished = %v after Finish", got)
	}
}

func TestAHostThatFailedStaysFailed(t *testing.T) {
	m := NewRollout(prometheus.NewRegistry(), []string{"a:1"})
	pos := rollout.Event{Batch: 1, Batches: 1, Steps: 2}
	m.Event(with(pos, rollout.EventSlotDone, 1, "a:1", rollout.ResultError))
	m.Event(with(pos, rollout.EventSlotDone, 2, "a:1", rollout.ResultReplaced))
	if err := testutil.CollectAndCompare(m.hosts, strings.NewReader(hostsWant(0, 0, 0, 1, 0, 0))); err != nil {
		t.Fatal(err)
	}
}

func with(pos rollout.Event, kind rollout.EventKind, step int, host, result string) rollout.Event {
	pos.Kind, pos.Step, pos.Host, pos.Result = kind, step, host, result
	return pos
}
