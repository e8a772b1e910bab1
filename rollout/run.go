package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

// run is the state of one Executor.Run.
type run struct {
	e   *Executor
	log *slog.Logger

	mu sync.Mutex
	// conns are the agent connections open (see conns).
	conns   *conns
	skipped map[string]string // host -> why
	results map[string][]SlotResult

	// waitBusy makes preflight wait for a busy host (Resume).
	waitBusy bool
	// prior are the pairs an earlier run finished (Resume).
	prior map[pair]PairResult

	// w records the rollout's progress in the store; decisions are the
	// canary decisions there (nil without a store).
	w         *stateWriter
	decisions decisionStore
	where     string // the store's String, "" without one

	emitMu sync.Mutex

	slots []string // the slots replaced, in order
	// statuses are what each host answered at the preflight.
	statuses map[string]*agentpb.StatusResponse
	// rollingBack: the on_failure rollback a resumed run finishes (why).
	rollingBack string
	// fence is the lease's, carried by every request (nil: no lease).
	fence *agentpb.Fence
	// lost: the fleet lock was found lost before a step.
	lost     error
	noClaims sync.Once
	// unfinished: the run stopped with work only a resume may finish (a
	// recorded promotion that failed): the state is not marked complete.
	unfinished bool
}

// newRun starts a run of e that records its progress in store (nil: in
// memory only), under e.Lease.
func newRun(e *Executor, store Store) *run {
	log := e.log()
	r := &run{e: e, log: log, w: newStateWriterTo(nil, log), conns: newConns(e.Dial, e.ConnectTimeout, log), fence: newFence(e)}
	if store != nil {
		r.w = newStateWriterTo(store.stateBackend(e.Lease), log)
		r.decisions = store.decisions(e.Lease)
		r.where = store.String()
	}
	return r
}

// pair is a host and the index of a slot.
type pair struct {
	host string
	slot int
}

func (r *run) emit(ev Event) {
	if r.e.Events == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	r.e.Events(ev)
}

// close closes every connection still open, then the state writer.
func (r *run) close() {
	r.conns.closeAll()
	r.log.Debug("agent connections closed", "peak_open", r.conns.peakOpen())
	r.w.close()
}

// connect returns h's connection, dialling it if none is open (canary
// analysis, promotion and rollback may need a host after its last step).
// The error names h and wraps ErrUnreachable, or is ctx's.
func (r *run) connect(ctx context.Context, h string) (Agent, error) {
	a, err := r.conns.get(ctx, h)
	if err != nil {
		// Forgotten, so the next call (the canary rollback after an
		// analysis whose dial failed) dials again rather than failing on
		// this error.
		r.conns.release(h)
		return nil, fmt.Errorf("host %s: %w", h, err)
	}
	return a, nil
}

// statusImage is the image h said slot runs at the preflight; "" if unknown.
func (r *run) statusImage(h, slot string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.statuses[h].GetSlots() {
		if s.GetSlot() == slot {
			return s.GetImage()
		}
	}
	return ""
}

// within bounds ctx by d; zero or less means no deadline of its own.
func within(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// refused fills res in for a rollout that touched no host.
func (r *run) refused(res Result, hosts []string, plan Plan, start time.Time, err error) (Result, error) {
	res.Hosts = r.hostResults(hosts, plan)
	res.Totals = totals(res.Hosts)
	res.Total = time.Since(start)
	res.StateWrites = r.w.writes()
	res.Error = err.Error()
	return res, err
}

func (r *run) slotIndex(slot string) int {
	for i, s := range r.slots {
		if s == slot {
			return i
		}
	}
	return -1
}
