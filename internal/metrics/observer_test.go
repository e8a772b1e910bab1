package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haroll/haroll/agent"
)

func newTestObserver(t *testing.T, slots ...string) (*Observer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return NewObserver(reg, slots), reg
}

func TestEverySlotAndResultHasASeriesBeforeTheFirstReplacement(t *testing.T) {
	o, _ := newTestObserver(t, "app-1", "app-2")
	if n := testutil.CollectAndCount(o.replacements); n != 2*len(results) {
		t.Fatalf("%d replacement series, want %d", n, 2*len(results))
	}
	if v := testutil.ToFloat64(o.replacements.WithLabelValues("app-2", "replaced")); v != 0 {
		t.Fatalf("app-2 replaced = %v before any replacement", v)
	}
}

func TestSlotReportsAreCountedBySlotAndResult(t *testing.T) {
	o, _ := newTestObserver(t, "app-1", "app-2", "app-3")
	for _, r := range []agent.SlotReport{
		{Slot: "app-1", Result: agent.ResultReplaced, Total: 3 * time.Second},
		{Slot: "app-2", Result: agent.ResultRolledBack},
		{Slot: "app-3", Result: agent.ResultNotRun},
		{Slot: "app-1", Result: agent.ResultReplaced, Total: 40 * time.Second},
	} {
		o.Slot(r)
	}
	want := `
# HELP haroll_replacements_total Slots a redeploy was asked for, by how their replacement ended (replaced, skipped, rolled_back, failed, not_run).
# TYPE haroll_replacements_total counter
haroll_replacements_total{result="failed",slot="app-1"} 0
haroll_replacements_total{result="failed",slot="app-2"} 0
haroll_replacements_total{result="failed",slot="app-3"} 0
haroll_replacements_total{result="not_run",slot="app-1"} 0
haroll_replacements_total{result="not_run",slot="app-2"} 0
haroll_replacements_total{result="not_run",slot="app-3"} 1
haroll_replacements_total{result="replaced",slot="app-1"} 2
haroll_replacements_total{result="replaced",slot="app-2"} 0
haroll_replacements_total{result="replaced",slot="app-3"} 0
haroll_replacements_total{result="rolled_back",slot="app-1"} 0
haroll_replacements_total{result="rolled_back",slot="app-2"} 1
haroll_replacements_total{result="rolled_back",slot="app-3"} 0
haroll_replacements_total{result="skipped",slot="app-1"} 0
haroll_replacements_total{result="skipped",slot="app-2"} 0
haroll_replacements_total{result="skipped",slot="app-3"} 0
`
	if err := testutil.CollectAndCompare(o.replacements, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(o.duration, strings.NewReader(histogram("haroll_replacement_duration_seconds",
		"Time from drain to cleanup of each slot replaced.", "", map[float64]int{5: 1, 60: 2}, 2, 43))); err != nil {
		t.Fatal(err)
	}
}

func TestPhasesFillTheHistogramAndFailuresAreCounted(t *testing.T) {
	o, _ := newTestObserver(t, "app-1")
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseDrain, Duration: 20 * time.Millisecond})
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseBoot, Duration: 2 * time.Second})
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseBoot, Duration: 61 * time.Second, Err: "not healthy", Cause: agent.ErrNotHealthy})
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseSkip})
	o.Phase(agent.Event{Slot: "(journal)", Phase: agent.PhaseRecover})
	boot := o.phases.WithLabelValues("boot").(prometheus.Histogram)
	if err := testutil.CollectAndCompare(boot, strings.NewReader(histogram("haroll_phase_duration_seconds",
		"Duration of each finished phase of a slot replacement, failed ones included.", `phase="boot"`,
		map[float64]int{2.5: 1, 120: 2}, 2, 63))); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(o.phaseErrors.WithLabelValues("boot")); got != 1 {
		t.Errorf("boot errors %v, want 1", got)
	}
	if got := testutil.ToFloat64(o.recoveries); got != 1 {
		t.Errorf("recoveries %v, want 1", got)
	}
	// skip and recover only mark: no phase series of theirs.
	if n := testutil.CollectAndCount(o.phases); n != len(timedPhases) {
		t.Errorf("%d phase series, want %d", n, len(timedPhases))
	}
}

func TestDrainWaitsAndTimeoutsAreCounted(t *testing.T) {
	o, _ := newTestObserver(t, "app-1", "app-2")
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseDrain, Duration: 300 * time.Millisecond})
	// on_timeout fail: the phase fails with ErrDrainTimeout.
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseDrain, Duration: 30 * time.Second, DrainTimedOut: true,
		Err: "drain timed out", Cause: agent.ErrDrainTimeout})
	// on_timeout shutdown: the phase succeeds.
	o.Phase(agent.Event{Slot: "app-2", Phase: agent.PhaseDrain, Duration: 31 * time.Second, DrainTimedOut: true})
	// Refused before waiting (min_serving): no wait to count.
	o.Phase(agent.Event{Slot: "app-2", Phase: agent.PhaseDrain, Duration: time.Millisecond, Err: "too few", Cause: errors.New("too few")})
	if got := testutil.ToFloat64(o.drainTimeouts.WithLabelValues("app-1")); got != 1 {
		t.Errorf("app-1 drain timeouts %v, want 1", got)
	}
	if got := testutil.ToFloat64(o.drainTimeouts.WithLabelValues("app-2")); got != 1 {
		t.Errorf("app-2 drain timeouts %v, want 1", got)
	}
	if err := testutil.CollectAndCompare(o.drainWait, strings.NewReader(histogram("haroll_drain_wait_seconds",
		"Time from taking a slot's traffic away until it had no session and no queued request (or drain.timeout).", "",
		map[float64]int{.5: 1, 30: 2, 60: 3}, 3, 61.3))); err != nil {
		t.Fatal(err)
	}
}

func TestRollbacksAreCountedByOutcome(t *testing.T) {
	o, _ := newTestObserver(t, "app-1")
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseRollback, Duration: time.Second})
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseRollback, Duration: time.Second})
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseRollback, Duration: time.Second, Err: "rollback incomplete"})
	want := `
# HELP haroll_rollbacks_total Rollbacks to the old container, by outcome: rolled_back (it serves again) or failed (incomplete; the journal is kept).
# TYPE haroll_rollbacks_total counter
haroll_rollbacks_total{result="failed",slot="app-1"} 1
haroll_rollbacks_total{result="rolled_back",slot="app-1"} 2
`
	if err := testutil.CollectAndCompare(o.rollbacks, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
