package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/haroll/haroll/agent"
)

// Observer counts the agent's replacements, phases, drains and rollbacks. It
// is an agent.Observer: pass it to agent.New with agent.WithObserver.
type Observer struct {
	replacements  *prometheus.CounterVec
	duration      prometheus.Histogram
	phases        *prometheus.HistogramVec
	phaseErrors   *prometheus.CounterVec
	drainWait     prometheus.Histogram
	drainTimeouts *prometheus.CounterVec
	rollbacks     *prometheus.CounterVec
	recoveries    prometheus.Counter
}

var _ agent.Observer = (*Observer)(nil)

// results are every agent.Result, so that each series exists from the start.
var results = []agent.Result{agent.ResultReplaced, agent.ResultSkipped, agent.ResultRolledBack, agent.ResultFailed, agent.ResultNotRun}

// timedPhases are the phases that take time (skip and recover only mark).
var timedPhases = []agent.Phase{agent.PhasePreflight, agent.PhaseDrain, agent.PhaseCreate, agent.PhaseStop, agent.PhaseStart,
	agent.PhaseBoot, agent.PhaseAddress, agent.PhaseGate, agent.PhaseRestore, agent.PhaseCleanup, agent.PhaseRollback}

// NewObserver registers the agent's replacement metrics on reg, with a zero
// series for each of slots (the configured slot names) so that rates and
// alerts work before the first replacement. It panics if they are already
// registered.
func NewObserver(reg prometheus.Registerer, slots []string) *Observer {
	o := &Observer{
		replacements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haroll_replacements_total",
			Help: "Slots a redeploy was asked for, by how their replacement ended (replaced, skipped, rolled_back, failed, not_run).",
		}, []string{"slot", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "haroll_replacement_duration_seconds",
			Help:    "Time from drain to cleanup of each slot replaced.",
			Buckets: durationBuckets,
		}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "haroll_phase_duration_seconds",
			Help:    "Duration of each finished phase of a slot replacement, failed ones included.",
			Buckets: durationBuckets,
		}, []string{"phase"}),
		phaseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haroll_phase_errors_total",
			Help: "Phases of a slot replacement that failed.",
		}, []string{"phase"}),
		drainWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "haroll_drain_wait_seconds",
			Help:    "Time from taking a slot's traffic away until it had no session and no queued request (or drain.timeout).",
			Buckets: durationBuckets,
		}),
		drainTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haroll_drain_timeouts_total",
			Help: "Drains that reached drain.timeout with sessions still open (whether the slot failed or they were shut down).",
		}, []string{"slot"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haroll_rollbacks_total",
			Help: "Rollbacks to the old container, by outcome: rolled_back (it serves again) or failed (incomplete; the journal is kept).",
		}, []string{"slot", "result"}),
		recoveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haroll_recoveries_total",
			Help: "Replacements cut off by a crash that the agent finished or rolled back.",
		}),
	}
	reg.MustRegister(o.replacements, o.duration, o.phases, o.phaseErrors, o.drainWait, o.drainTimeouts, o.rollbacks, o.recoveries)
	for _, s := range slots {
		for _, r := range results {
			o.replacements.WithLabelValues(s, string(r))
		}
		o.drainTimeouts.WithLabelValues(s)
		o.rollbacks.WithLabelValues(s, string(agent.ResultRolledBack))
		o.rollbacks.WithLabelValues(s, string(agent.ResultFailed))
	}
	for _, p := range timedPhases {
		o.phases.WithLabelValues(string(p))
		o.phaseErrors.WithLabelValues(string(p))
	}
	return o
}

// Phase counts one finished phase.
func (o *Observer) Phase(e agent.Event) {
	switch e.Phase {
	case agent.PhaseSkip: // counted by Slot
		return
	case agent.PhaseRecover:
		o.recoveries.Inc()
		return
	}
	o.phases.WithLabelValues(string(e.Phase)).Observe(e.Duration.Seconds())
	if e.Err != "" {
		o.phaseErrors.WithLabelValues(string(e.Phase)).Inc()
	}
	switch e.Phase {
	case agent.PhaseDrain:
		// A drain refused or cut short by another failure waited for nothing.
		if e.Err == "" || e.DrainTimedOut {
			o.drainWait.Observe(e.Duration.Seconds())
		}
		if e.DrainTimedOut {
			o.drainTimeouts.WithLabelValues(e.Slot).Inc()
		}
	case agent.PhaseRollback:
		result := agent.ResultRolledBack
		if e.Err != "" {
			result = agent.ResultFailed
		}
		o.rollbacks.WithLabelValues(e.Slot, string(result)).Inc()
	}
}

// Slot counts one slot's outcome.
func (o *Observer) Slot(r agent.SlotReport) {
	o.replacements.WithLabelValues(r.Slot, string(r.Result)).Inc()
	if r.Result == agent.ResultReplaced {
		o.duration.Observe(r.Total.Seconds())
	}
}
