package rollout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

// run is the state of one Executor.Run.
type run struct {
	e   *Executor
	log *slog.Logger

	mu      sync.Mutex
	agents  map[string]Agent
	skipped map[string]string // host -> why
	results map[string][]SlotResult

	// waitBusy makes preflight wait for a busy host (Resume).
	waitBusy bool
	// prior are the pairs an earlier run finished (Resume).
	prior map[pair]PairResult

	// w records the rollout's progress (the state file).
	w *stateWriter

	emitMu sync.Mutex

	slots []string // the slots replaced, in order
	// statuses are what each host answered at the preflight.
	statuses map[string]*agentpb.StatusResponse
	// unfinished: the run stopped with work only a resume may finish (a
	// recorded promotion that failed): the state is not marked complete.
	unfinished bool
}

// newRun starts a run of e that records its progress in stateFile ("":
// in memory only).
func newRun(e *Executor, stateFile string) *run {
	log := e.log()
	return &run{e: e, log: log, w: newStateWriter(stateFile, log)}
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

func (r *run) close() {
	for _, a := range r.agents {
		if c, ok := a.(io.Closer); ok {
			_ = c.Close()
		}
	}
	r.w.close()
}

func (r *run) agent(h string) Agent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.agents[h]
}

// connect returns h's agent, dialling it if this run has not yet (a resume
// dials only the hosts with a pair left).
func (r *run) connect(ctx context.Context, h string) (Agent, error) {
	if a := r.agent(h); a != nil {
		return a, nil
	}
	dctx, cancel := within(ctx, r.e.ConnectTimeout)
	defer cancel()
	a, err := r.e.Dial(dctx, h)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h, asUnreachable(err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.agents == nil {
		r.agents = map[string]Agent{}
	}
	r.agents[h] = a
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
