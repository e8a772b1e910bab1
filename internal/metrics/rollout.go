package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haroll/haroll/rollout"
)

// Host states of haroll_rollout_hosts, beyond rollout's HostDone,
// HostFailed, HostNotRun and HostSkipped.
const (
	hostPending = "pending" // no slot of it finished yet
	hostRunning = "running" // some of its slots finished, none failed
)

var hostStates = []string{hostPending, hostRunning, rollout.HostDone, rollout.HostFailed, rollout.HostNotRun, rollout.HostSkipped}

// Rollout follows a coordinator's rollout from its events (Event, meant for
// rollout.Executor.Events) and its result (Finish).
type Rollout struct {
	hosts     *prometheus.GaugeVec
	batch     prometheus.Gauge
	batches   prometheus.Gauge
	slotsDone *prometheus.CounterVec
	steps     prometheus.Histogram
	finished  prometheus.Gauge

	mu     sync.Mutex
	state  map[string]string           // host -> one of hostStates
	counts map[string]int              // state -> hosts in it
	gauges map[string]prometheus.Gauge // state -> its haroll_rollout_hosts gauge
}

// NewRollout registers the rollout metrics on reg, for a rollout over hosts
// (each pending at first). It panics if they are already registered.
func NewRollout(reg prometheus.Registerer, hosts []string) *Rollout {
	r := &Rollout{
		hosts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haroll_rollout_hosts",
			Help: "Hosts of the rollout by state: pending, running, done, failed, not_run (batch not started), skipped (unreachable). Exact once haroll_rollout_finished is 1.",
		}, []string{"result"}),
		batch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haroll_rollout_batch",
			Help: "The batch being rolled (1-based); 0 before the first.",
		}),
		batches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haroll_rollout_batches",
			Help: "Batches in the rollout's plan; 0 until the first starts.",
		}),
		slotsDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haroll_rollout_slots_done_total",
			Help: "(host, slot) pairs finished, by result: replaced, skipped, rolled_back, failed, not_run, error (no report).",
		}, []string{"result"}),
		steps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "haroll_rollout_step_duration_seconds",
			Help:    "Duration of each step: one slot on every host of a batch, at once.",
			Buckets: durationBuckets,
		}),
		finished: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haroll_rollout_finished",
			Help: "1 once the rollout ended (whatever its result), else 0.",
		}),
		state:  make(map[string]string, len(hosts)),
		counts: make(map[string]int, len(hostStates)),
		gauges: make(map[string]prometheus.Gauge, len(hostStates)),
	}
	reg.MustRegister(r.hosts, r.batch, r.batches, r.slotsDone, r.steps, r.finished)
	for _, s := range hostStates {
		r.gauges[s] = r.hosts.WithLabelValues(s)
		r.gauges[s].Set(0)
	}
	for _, h := range hosts {
		r.set(h, hostPending)
	}
	for _, res := range []string{rollout.ResultReplaced, rollout.ResultSkipped, rollout.ResultRolledBack, rollout.ResultFailed, rollout.ResultError} {
		r.slotsDone.WithLabelValues(res)
	}
	return r
}

// Event follows one rollout event, in constant time whatever the size of
// the fleet. Safe for concurrent use.
func (r *Rollout) Event(e rollout.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Kind {
	case rollout.EventSkipped:
		r.set(e.Host, rollout.HostSkipped)
	case rollout.EventBatchStart:
		r.batch.Set(float64(e.Batch))
		r.batches.Set(float64(e.Batches))
	case rollout.EventStepEnd:
		r.steps.Observe(e.Duration.Seconds())
	case rollout.EventSlotDone:
		r.slotsDone.WithLabelValues(e.Result).Inc()
		switch {
		case e.Result != rollout.ResultReplaced && e.Result != rollout.ResultSkipped:
			r.set(e.Host, rollout.HostFailed)
		case r.state[e.Host] == rollout.HostFailed:
		case e.Step == e.Steps:
			r.set(e.Host, rollout.HostDone)
		default:
			r.set(e.Host, hostRunning)
		}
	}
}

// Finish sets every host's state from the rollout's result, which also
// knows the hosts of batches that never started and the pairs a resumed
// rollout finished earlier.
func (r *Rollout) Finish(res rollout.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range res.Hosts {
		r.set(h.Host, h.Result)
	}
	r.finished.Set(1)
}

// set moves host to state s and updates the two haroll_rollout_hosts
// gauges that change; r.mu is held. A state outside hostStates is counted
// but has no gauge, as before.
func (r *Rollout) set(host, s string) {
	old, known := r.state[host]
	if known && old == s {
		return
	}
	if known {
		r.counts[old]--
		if g, ok := r.gauges[old]; ok {
			g.Set(float64(r.counts[old]))
		}
	}
	r.state[host] = s
	r.counts[s]++
	if g, ok := r.gauges[s]; ok {
		g.Set(float64(r.counts[s]))
	}
}
