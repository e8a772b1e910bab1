package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/haroll/haroll/agent/agentpb"
)

// Agent is one host's agent as the executor uses it.
type Agent interface {
	Status(ctx context.Context) (*agentpb.StatusResponse, error)
	Redeploy(ctx context.Context, req *agentpb.RedeployRequest, onPhase func(*agentpb.PhaseEvent)) (*agentpb.Report, error)
	// Promote gives the host's canary slots their whole weight back.
	Promote(ctx context.Context, origin string) error
	// Counters calls onSample with every slot's HAProxy counters, every
	// interval, until window has passed or ctx ends (then it returns nil).
	Counters(ctx context.Context, interval, window time.Duration, onSample func(*agentpb.CountersSample)) error
}

// Dial opens the agent at host (an agent address, host:port). If the Agent
// it returns is an io.Closer, the executor closes it at the end of the run.
type Dial func(ctx context.Context, host string) (Agent, error)

// preflightConcurrency bounds the hosts dialled and asked for their status
// at once, so a fleet of thousands does not open every connection at once.
const preflightConcurrency = 256

// maxListedErrors bounds the errors spelled out in Run's error; Result has
// every one.
const maxListedErrors = 10

// Executor rolls an image over a fleet of agents, batch by batch, as Plan
// says. Its zero timeouts mean "no deadline"; its zero MaxFailures
// tolerates no failed host.
type Executor struct {
	Dial  Dial
	Image string
	Force bool
	// Origin tells an agent (and whoever finds it busy) who asks.
	Origin          string
	MaxFailures     Threshold
	SkipUnreachable bool
	// ConnectTimeout bounds dialling a host and its Status answer.
	ConnectTimeout time.Duration
	// StepTimeout bounds a step: every host of it must report by then, or
	// is counted failed (the agent finishes or rolls back on its own). It
	// includes the agent's image pull, which a step timeout stops.
	StepTimeout time.Duration
	// StateFile, if set, is where Run and Resume persist the rollout's
	// progress (see State) after every finished (host, slot) pair.
	StateFile string
	// PollInterval is how often Resume asks a busy host whether it is idle
	// yet; zero means every second.
	PollInterval time.Duration
	// Canary, if set, runs the plan's canary batch as a canary: a share of
	// the weight, an analysis of HAProxy's counters, an optional pause, then
	// promotion or rollback (see CanaryPolicy).
	Canary *CanaryPolicy
	// Hooks run after the preflight, before the first batch (Pre), and once
	// the rollout ended (Post).
	Hooks Hooks
	// Events, if set, receives the live progress, one event at a time.
	Events func(Event)
	Log    *slog.Logger
}

// Run checks every host, plans the rollout and carries it out. Before any
// host is touched, a host that does not answer (unless SkipUnreachable),
// is busy, or lacks a slot, or a canary slot whose canary share would be
// its whole weight, fails the rollout with ErrPreflight. slots
// empty means the slots the first answering host reports. After a batch,
// if the failed hosts exceed MaxFailures, no further batch starts. Hooks.Pre
// runs after the preflight (a failure touches no host and writes no state
// file), Hooks.Post once the rollout ended (see Hooks).
//
// The error is nil only when every planned host had every slot replaced or
// skipped, and the hooks passed; otherwise it wraps ErrFailed (or
// ErrPreflight, ErrHookFailed, context.Canceled) and the per-host errors.
// Result is filled in either way.
func (e *Executor) Run(ctx context.Context, hosts, slots []string, strategy Strategy) (Result, error) {
	start := time.Now()
	res := Result{Image: e.Image}
	if e.Image == "" || e.Dial == nil {
		return res, errors.New("rollout: an image and a Dial are required")
	}
	if err := checkNames("host", hosts); err != nil {
		return res, err
	}
	r := &run{e: e, log: e.log()}
	defer r.close()
	if e.StateFile != "" { // a decision left from an earlier rollout is not for this one
		_ = os.Remove(DecisionFile(e.StateFile))
	}

	ready, slots, err := r.preflight(ctx, hosts, slots)
	res.Slots, r.slots = slots, slots
	if err != nil {
		return r.refused(res, hosts, Plan{}, start, err)
	}
	plan, err := NewPlan(ready, slots, strategy)
	if err != nil {
		return res, err
	}
	res.Plan = plan
	r.results = make(map[string][]SlotResult, len(ready))
	for _, h := range ready {
		r.results[h] = notRun(slots)
	}
	if err := r.checkWeights(plan); err != nil {
		return r.refused(res, hosts, plan, start, err)
	}
	if err := r.preHook(ctx); err != nil {
		return r.refused(res, hosts, plan, start, err)
	}
	if e.StateFile != "" {
		r.state = &State{Version: stateVersion, Image: e.Image, Force: e.Force, MaxFailures: e.MaxFailures.String(),
			Hosts: hosts, Skipped: r.skipped, Slots: slots, Plan: plan, Done: []PairResult{}, Started: start, PID: os.Getpid(),
			CanaryPolicy: e.Canary}
		if err := r.save(); err != nil {
			return r.refused(res, hosts, plan, start, fmt.Errorf("%w: %w: %w", ErrPreflight, ErrState, err))
		}
	}
	res, err = r.execute(ctx, hosts, plan, res, start)
	return r.postHook(ctx, res, err)
}

// Resume goes on with the rollout st records (read by LoadResumable) and
// keeps recording into StateFile. Pairs st records as finished are not
// asked again, and count as they did: a host that failed one is failed and
// not asked for its later slots, and failed hosts count toward MaxFailures.
// Before any host is touched, each host with a pair left is asked its
// status; one that is busy (typically finishing or rolling back the slot the
// dead coordinator left in flight) is waited for, polling every
// PollInterval for at most StepTimeout, and its pair is then asked again:
// the agent skips a slot already on the image. A host still busy, or
// unreachable (unless SkipUnreachable), fails the resume with ErrPreflight.
// e.Image must be st.Image (ErrImageMismatch); e.Force should be st.Force.
// Result and the error are as for Run, and cover the whole rollout.
func (e *Executor) Resume(ctx context.Context, st *State) (Result, error) {
	start := time.Now()
	res := Result{Image: st.Image, Slots: st.Slots, Plan: st.Plan}
	if e.Dial == nil {
		return res, errors.New("rollout: a Dial is required")
	}
	if e.Image != st.Image {
		return res, fmt.Errorf("%w: resuming %s with image %s", ErrImageMismatch, st.Image, e.Image)
	}
	r := &run{e: e, log: e.log(), state: st, waitBusy: true, prior: map[pair]PairResult{}, slots: st.Slots}
	defer r.close()
	slotIndex := make(map[string]int, len(st.Slots))
	for i, s := range st.Slots {
		slotIndex[s] = i
	}
	r.results = map[string][]SlotResult{}
	for _, b := range st.Plan.Batches {
		for _, h := range b.Hosts {
			r.results[h] = notRun(st.Slots)
		}
	}
	for _, p := range st.Done {
		si, ok := slotIndex[p.Slot]
		if _, planned := r.results[p.Host]; !ok || !planned {
			return res, fmt.Errorf("state file: %s slot %s is recorded but not in the plan", p.Host, p.Slot)
		}
		r.prior[pair{p.Host, si}] = p
		r.results[p.Host][si] = SlotResult{Slot: p.Slot, Result: p.Result, Duration: p.Duration, Error: p.Error}
	}
	res.Resumed = len(r.prior)
	st.PID = os.Getpid()

	// The hosts left to ask: those with a pair not recorded, unless a
	// recorded failure in their batch ends them.
	var unfinished []string
	for _, b := range st.Plan.Batches {
		for _, h := range b.Hosts {
			left := false
			for si := range b.Steps {
				p, ok := r.prior[pair{h, si}]
				if ok && !slotOK(p.Result) {
					left = false
					break
				}
				left = left || !ok
			}
			if left {
				unfinished = append(unfinished, h)
			}
		}
	}
	r.skipped = map[string]string{}
	if len(unfinished) > 0 {
		_, _, err := r.preflight(ctx, unfinished, st.Slots)
		if err != nil {
			return r.refused(res, st.Hosts, st.Plan, start, err)
		}
	}
	for h, why := range st.Skipped {
		r.skipped[h] = why
	}
	st.Skipped = r.skipped
	if err := r.preHook(ctx); err != nil {
		return r.refused(res, st.Hosts, st.Plan, start, err)
	}
	res, err := r.execute(ctx, st.Hosts, st.Plan, res, start)
	return r.postHook(ctx, res, err)
}

// refused fills res in for a rollout that touched no host.
func (r *run) refused(res Result, hosts []string, plan Plan, start time.Time, err error) (Result, error) {
	res.Hosts = r.hostResults(hosts, plan)
	res.Totals = totals(res.Hosts)
	res.Total = time.Since(start)
	res.Error = err.Error()
	return res, err
}

// execute runs plan's batches in order, stopping before a batch when the
// context is done, the state file could not be written, or failures passed
// MaxFailures, and marks the state complete unless the context is done.
func (r *run) execute(ctx context.Context, hosts []string, plan Plan, res Result, start time.Time) (Result, error) {
	e := r.e
	var errs *multierror.Error
	failedHosts := 0
	for bi, b := range plan.Batches {
		br := BatchResult{Batch: bi + 1, Canary: b.Canary, Hosts: len(b.Hosts)}
		if res.Stopped != "" {
			res.Batches = append(res.Batches, br)
			continue
		}
		failed, stop, err := r.batch(ctx, bi, len(plan.Batches), b, &br)
		errs = multierror.Append(errs, err)
		res.Batches = append(res.Batches, br)
		failedHosts += failed
		last := bi == len(plan.Batches)-1
		switch {
		case stop != "":
			res.Stopped = stop
		case ctx.Err() != nil:
			res.Stopped = "cancelled: " + context.Cause(ctx).Error()
		case r.stateError() != nil:
			res.Stopped = r.stateError().Error()
		case !last && e.MaxFailures.Exceeded(failedHosts, plan.Hosts()):
			res.Stopped = fmt.Sprintf("%d of %d hosts failed, more than max_failures %s", failedHosts, plan.Hosts(), e.MaxFailures)
		}
		if res.Stopped != "" && !last {
			r.log.Warn("rollout stopped", "batch", bi+1, "reason", res.Stopped)
		}
	}

	res.Hosts = r.hostResults(hosts, plan)
	res.Totals = totals(res.Hosts)
	res.Total = time.Since(start)
	if err := r.stateError(); err != nil {
		errs = multierror.Append(errs, err)
	}
	if r.state != nil && ctx.Err() == nil && r.stateError() == nil && !r.unfinished {
		r.stateMu.Lock()
		r.state.Complete, r.state.Stopped, r.state.Outcome = true, res.Stopped, HostDone
		if errs.ErrorOrNil() != nil {
			r.state.Outcome = HostFailed
		}
		err := r.saveLocked()
		r.stateMu.Unlock()
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%w: %w: the rollout ended but the file does not say so", ErrState, err))
		}
	}
	if errs.ErrorOrNil() == nil && ctx.Err() == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		errs = multierror.Append(errs, context.Cause(ctx))
	}
	errs.ErrorFormat = listErrors
	err := fmt.Errorf("%w: %d of %d hosts failed, %d not run: %w", ErrFailed, res.Totals.Failed, res.Totals.Hosts, res.Totals.NotRun, errs)
	res.Error = err.Error()
	return res, err
}

// Check does what Run does before touching any host, and nothing more: it
// dials every host and asks its status. It returns the hosts Run would roll
// (all of them, or those that answered with SkipUnreachable) and the slots,
// or an error wrapping ErrPreflight.
func (e *Executor) Check(ctx context.Context, hosts, slots []string) (ready, slotNames []string, err error) {
	if e.Dial == nil {
		return nil, nil, errors.New("rollout: a Dial is required")
	}
	if err := checkNames("host", hosts); err != nil {
		return nil, nil, err
	}
	r := &run{e: e, log: e.log()}
	defer r.close()
	return r.preflight(ctx, hosts, slots)
}

func (e *Executor) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

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

	stateMu  sync.Mutex
	state    *State // nil: nothing persisted
	stateErr error  // the first failed write

	emitMu sync.Mutex

	slots  []string     // the slots replaced, in order
	canary *CanaryState // the canary's progress, once it began
	// statuses are what each host answered at the preflight.
	statuses map[string]*agentpb.StatusResponse
	// unfinished: the run stopped with work only a resume may finish (a
	// recorded promotion that failed): the state is not marked complete.
	unfinished bool
}

// pair is a host and the index of a slot.
type pair struct {
	host string
	slot int
}

// record adds a finished pair to the state and writes it. A failed write
// is logged and remembered: the rollout stops before its next step.
func (r *run) record(p PairResult) {
	if r.state == nil {
		return
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	r.state.Done = append(r.state.Done, p)
	if err := r.saveLocked(); err != nil && r.stateErr == nil {
		r.log.Error("state file not written: the rollout stops after this step", "error", err)
		r.stateErr = fmt.Errorf("%w: %w", ErrState, err)
	}
}

func (r *run) save() error {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.saveLocked()
}

func (r *run) saveLocked() error {
	r.state.Updated = time.Now()
	return WriteState(r.e.StateFile, r.state)
}

func (r *run) stateError() error {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.stateErr
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
}

// preflight dials every host and asks its status, in parallel, and returns
// the hosts to roll (inventory order) and the slots to replace.
func (r *run) preflight(ctx context.Context, hosts, slots []string) ([]string, []string, error) {
	statuses := make([]*agentpb.StatusResponse, len(hosts))
	errs := make([]error, len(hosts))
	r.agents = make(map[string]Agent, len(hosts))
	r.statuses = make(map[string]*agentpb.StatusResponse, len(hosts))
	sem := make(chan struct{}, preflightConcurrency)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			a, st, err := r.status(ctx, h)
			if err == nil && r.waitBusy && st.GetBusy() != "" {
				st, err = r.waitIdle(ctx, a, h, st)
			}
			statuses[i], errs[i] = st, err
			r.mu.Lock()
			if a != nil {
				r.agents[h] = a
			}
			if st != nil {
				r.statuses[h] = st
			}
			r.mu.Unlock()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, slots, fmt.Errorf("%w: %w", ErrPreflight, context.Cause(ctx))
	}

	var problems *multierror.Error
	r.skipped = map[string]string{}
	var ready []string
	for i, h := range hosts {
		switch {
		case errs[i] != nil && r.e.SkipUnreachable:
			r.skipped[h] = errs[i].Error()
			r.log.Warn("host skipped", "host", h, "error", errs[i])
			r.emit(Event{Kind: EventSkipped, Host: h, Err: errs[i].Error()})
		case errs[i] != nil:
			problems = multierror.Append(problems, errs[i])
		default:
			ready = append(ready, h)
		}
	}
	if len(slots) == 0 && len(ready) > 0 {
		for _, s := range statuses[slices.Index(hosts, ready[0])].GetSlots() {
			slots = append(slots, s.GetSlot())
		}
		if len(slots) == 0 {
			problems = multierror.Append(problems, fmt.Errorf("host %s: reports no slot, so there is nothing to replace: pass --slot or check its agent configuration", ready[0]))
		}
	}
	for i, h := range hosts {
		if errs[i] != nil {
			continue
		}
		st := statuses[i]
		if st.GetBusy() != "" {
			problems = multierror.Append(problems, fmt.Errorf("host %s: %w: %s", h, ErrBusy, st.GetBusy()))
		}
		have := make(map[string]bool, len(st.GetSlots()))
		for _, s := range st.GetSlots() {
			have[s.GetSlot()] = true
		}
		var missing []string
		for _, s := range slots {
			if !have[s] {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			problems = multierror.Append(problems, fmt.Errorf("host %s: %w: %s (it has %s)", h, ErrMissingSlot, strings.Join(missing, ", "), slotNames(st)))
		}
	}
	if problems.ErrorOrNil() != nil {
		problems.ErrorFormat = listErrors
		return nil, slots, fmt.Errorf("%w: %w", ErrPreflight, problems)
	}
	if len(ready) == 0 {
		return nil, slots, fmt.Errorf("%w: no host answered", ErrPreflight)
	}
	return ready, slots, nil
}

// status dials h and asks its status within ConnectTimeout.
func (r *run) status(ctx context.Context, h string) (Agent, *agentpb.StatusResponse, error) {
	ctx, cancel := within(ctx, r.e.ConnectTimeout)
	defer cancel()
	a, err := r.e.Dial(ctx, h)
	if err != nil {
		return nil, nil, fmt.Errorf("host %s: %w", h, asUnreachable(err))
	}
	st, err := a.Status(ctx)
	if err != nil {
		return a, nil, fmt.Errorf("host %s: %w", h, asUnreachable(err))
	}
	return a, st, nil
}

// waitIdle asks h its status every PollInterval until it is no longer busy,
// for at most StepTimeout, and returns the last status: still busy if the
// time ran out. It fails only when ctx is done.
func (r *run) waitIdle(ctx context.Context, a Agent, h string, st *agentpb.StatusResponse) (*agentpb.StatusResponse, error) {
	r.log.Info("waiting for a busy host", "host", h, "busy", st.GetBusy())
	r.emit(Event{Kind: EventWaiting, Host: h, Detail: st.GetBusy()})
	wctx, cancel := within(ctx, r.e.StepTimeout)
	defer cancel()
	every := r.e.PollInterval
	if every <= 0 {
		every = time.Second
	}
	t0 := time.Now()
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, fmt.Errorf("host %s: %w", h, context.Cause(ctx))
			}
			r.log.Warn("host still busy", "host", h, "busy", st.GetBusy(), "waited", time.Since(t0))
			return st, nil
		case <-time.After(every):
		}
		sctx, cancel := within(wctx, r.e.ConnectTimeout)
		now, err := a.Status(sctx)
		cancel()
		if err != nil {
			r.log.Warn("status while waiting for a busy host", "host", h, "error", err)
			continue
		}
		st = now
		if st.GetBusy() == "" {
			r.log.Info("host idle", "host", h, "waited", time.Since(t0))
			return st, nil
		}
	}
}

// asUnreachable makes a dial or Status failure read as ErrUnreachable.
func asUnreachable(err error) error {
	if errors.Is(err, ErrUnreachable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

func slotNames(st *agentpb.StatusResponse) string {
	var names []string
	for _, s := range st.GetSlots() {
		names = append(names, s.GetSlot())
	}
	if len(names) == 0 {
		return "no slot"
	}
	return strings.Join(names, ", ")
}

// batch runs b step by step and returns how many of its hosts failed, and
// why the rollout must stop if a canary says so. A host that failed a step
// is not asked for its later slots.
func (r *run) batch(ctx context.Context, bi, nb int, b Batch, br *BatchResult) (int, string, error) {
	log := r.log.With("batch", bi+1)
	var errs *multierror.Error
	failed := map[string]bool{}
	// Pairs an earlier run finished are not asked again; a host that failed
	// one is failed here too.
	for si, st := range b.Steps {
		for _, h := range st.Hosts {
			if p, ok := r.prior[pair{h, si}]; ok && !slotOK(p.Result) && !failed[h] {
				failed[h] = true
				errs = multierror.Append(errs, fmt.Errorf("host %s slot %s: %s (recorded before the resume)", h, st.Slot, p.Error))
			}
		}
	}
	ask := func(si int) []string {
		return slices.DeleteFunc(slices.Clone(b.Steps[si].Hosts), func(h string) bool {
			_, done := r.prior[pair{h, si}]
			_, skipped := r.skipped[h]
			return failed[h] || done || skipped
		})
	}
	br.Run = true
	pending := false
	for si := range b.Steps {
		pending = pending || len(ask(si)) > 0
	}
	canarySteps := r.e.Canary.canarySteps(b)
	if !pending && canarySteps < 0 { // finished before a resume
		br.Failed = len(failed)
		return len(failed), "", errs.ErrorOrNil()
	}
	br.Start = time.Now()
	log.Info("batch start", "hosts", len(b.Hosts), "canary", b.Canary)
	r.emit(Event{Kind: EventBatchStart, Batch: bi + 1, Batches: nb, Canary: b.Canary, Hosts: len(b.Hosts), Steps: len(b.Steps)})
	stop := ""
	for si, st := range b.Steps {
		if ctx.Err() != nil || r.stateError() != nil {
			break
		}
		if si == canarySteps {
			if stop = r.judgeCanary(ctx, bi, nb, b, canarySteps, failed, &errs); stop != "" {
				break
			}
		}
		hosts := ask(si)
		if len(hosts) == 0 {
			continue
		}
		pos := Event{Batch: bi + 1, Batches: nb, Canary: b.Canary, Step: si + 1, Steps: len(b.Steps), Slot: st.Slot}
		start := pos
		start.Kind, start.Hosts = EventStepStart, len(hosts)
		r.emit(start)
		t0 := time.Now()
		stepErrs := r.step(ctx, log, pos, si, hosts, si < canarySteps)
		for h, err := range stepErrs {
			failed[h] = true
			errs = multierror.Append(errs, err)
		}
		end := pos
		end.Kind, end.Hosts, end.Failed, end.Duration = EventStepEnd, len(hosts), len(stepErrs), time.Since(t0)
		r.emit(end)
	}
	if canarySteps == len(b.Steps) && stop == "" && ctx.Err() == nil && r.stateError() == nil {
		stop = r.judgeCanary(ctx, bi, nb, b, canarySteps, failed, &errs)
	}
	br.Failed, br.Duration = len(failed), time.Since(br.Start)
	log.Info("batch end", "hosts", len(b.Hosts), "failed", len(failed), "duration", br.Duration)
	r.emit(Event{Kind: EventBatchEnd, Batch: bi + 1, Batches: nb, Canary: b.Canary, Hosts: len(b.Hosts),
		Failed: len(failed), Duration: br.Duration})
	return len(failed), stop, errs.ErrorOrNil()
}

// step replaces one slot on every host in parallel, under StepTimeout, and
// returns the hosts that failed with their errors. canary steps give the
// new containers CanaryPolicy.WeightPercent of their weight.
func (r *run) step(ctx context.Context, log *slog.Logger, pos Event, si int, hosts []string, canary bool) map[string]error {
	sctx, cancel := within(ctx, r.e.StepTimeout)
	defer cancel()
	var mu sync.Mutex
	failed := map[string]error{}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			sr, err := r.redeploy(ctx, sctx, pos, h, canary)
			r.mu.Lock()
			r.results[h][si] = sr
			r.mu.Unlock()
			// A call cut short by the coordinator stopping is not finished:
			// a resume asks it again.
			if ctx.Err() == nil || sr.Result != ResultError {
				r.record(PairResult{Batch: pos.Batch, Host: h, Slot: pos.Slot, Result: sr.Result, Error: sr.Error,
					Duration: sr.Duration, Finished: time.Now()})
			}
			ev := pos
			ev.Kind, ev.Host, ev.Result, ev.Duration, ev.Err = EventSlotDone, h, sr.Result, sr.Duration, sr.Error
			r.emit(ev)
			if err != nil {
				log.Warn("slot failed", "host", h, "slot", pos.Slot, "result", sr.Result, "error", err)
				mu.Lock()
				failed[h] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

// redeploy asks host h to replace one slot and turns the answer into a
// SlotResult and, when the slot was not replaced or skipped, an error.
func (r *run) redeploy(ctx, sctx context.Context, pos Event, h string, canary bool) (SlotResult, error) {
	sr := SlotResult{Slot: pos.Slot, Result: ResultError}
	a := r.agent(h)
	req := &agentpb.RedeployRequest{Image: r.e.Image, Slots: []string{pos.Slot}, Force: r.e.Force, Origin: r.e.Origin}
	if canary && r.e.Canary.WeightPercent < 100 {
		req.CanaryWeightPercent = int32(r.e.Canary.WeightPercent)
	}
	if canary {
		// Recorded before the call: whatever becomes of it (a step timeout
		// while the agent goes on, a coordinator crash before the pair is
		// recorded), a rollback knows what the slot ran.
		if err := r.noteOldImage(h, pos.Slot, r.statusImage(h, pos.Slot)); err != nil {
			sr.Error = err.Error()
			return sr, fmt.Errorf("host %s slot %s: %w", h, pos.Slot, err)
		}
	}
	t0 := time.Now()
	rep, err := a.Redeploy(sctx, req, r.phases(pos, h))
	sr.Duration = time.Since(t0)
	for _, s := range rep.GetSlots() {
		if s.GetSlot() != pos.Slot {
			continue
		}
		sr.Result, sr.Error, sr.OldImage = s.GetResult(), s.GetError(), s.GetOldImage()
		if canary && sr.Result == ResultReplaced {
			_ = r.noteOldImage(h, pos.Slot, sr.OldImage) // the agent's word; persisted with the pair
		}
		if d := s.GetTotal().AsDuration(); d > 0 {
			sr.Duration = d
		}
		sr.Phases = make(map[string]time.Duration, len(s.GetPhases()))
		for p, d := range s.GetPhases() {
			sr.Phases[p] = d.AsDuration()
		}
	}
	// The agent's end of the deadline (gRPC's grpc-timeout) may answer
	// DeadlineExceeded a moment before this end's fires: that is the step
	// timeout too.
	deadline, bounded := sctx.Deadline()
	timedOut := sctx.Err() != nil || bounded && errors.Is(err, context.DeadlineExceeded) && time.Until(deadline) < time.Second
	switch {
	case err != nil && timedOut && ctx.Err() == nil:
		err = fmt.Errorf("%w: no report within %s, the agent finishes or rolls back the slot on its own (or, still pulling the image, stops with nothing changed): %w", ErrStepTimeout, r.e.StepTimeout, err)
	case err == nil && !slotOK(sr.Result):
		err = fmt.Errorf("%w: result %q", ErrSlotFailed, sr.Result)
	}
	if err == nil {
		return sr, nil
	}
	if sr.Error == "" {
		sr.Error = err.Error()
	}
	return sr, fmt.Errorf("host %s slot %s: %w", h, pos.Slot, err)
}

// phases emits the agent's phase events of host h as EventPhase at pos.
func (r *run) phases(pos Event, h string) func(*agentpb.PhaseEvent) {
	return func(p *agentpb.PhaseEvent) {
		ev := pos
		ev.Kind, ev.Host, ev.Phase, ev.Duration, ev.Detail, ev.Err = EventPhase, h, p.GetPhase(),
			p.GetDuration().AsDuration(), p.GetDetail(), p.GetError()
		if p.GetSlot() != "" {
			ev.Slot = p.GetSlot()
		}
		r.emit(ev)
	}
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

func (r *run) agent(h string) Agent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.agents[h]
}

func notRun(slots []string) []SlotResult {
	out := make([]SlotResult, len(slots))
	for i, s := range slots {
		out[i] = SlotResult{Slot: s, Result: ResultNotRun}
	}
	return out
}

// hostResults sums each host up, in inventory order.
func (r *run) hostResults(hosts []string, plan Plan) []HostResult {
	batchOf := map[string]int{}
	for bi, b := range plan.Batches {
		for _, h := range b.Hosts {
			batchOf[h] = bi + 1
		}
	}
	out := make([]HostResult, 0, len(hosts))
	for _, h := range hosts {
		hr := HostResult{Host: h, Batch: batchOf[h], Result: HostNotRun}
		if why, ok := r.skipped[h]; ok {
			hr.Result, hr.Error = HostSkipped, why
			out = append(out, hr)
			continue
		}
		hr.Slots = r.results[h]
		ran := false
		for _, s := range hr.Slots {
			if s.Result == ResultNotRun {
				continue
			}
			ran = true
			if !slotOK(s.Result) && hr.Result != HostFailed {
				hr.Result, hr.Error = HostFailed, s.Error
			}
		}
		if ran && hr.Result == HostNotRun {
			hr.Result = HostDone
		}
		out = append(out, hr)
	}
	return out
}

func totals(hosts []HostResult) Totals {
	t := Totals{Hosts: len(hosts)}
	for _, h := range hosts {
		switch h.Result {
		case HostDone:
			t.Done++
		case HostFailed:
			t.Failed++
		case HostNotRun:
			t.NotRun++
		case HostSkipped:
			t.Skipped++
		}
	}
	return t
}

// listErrors formats a multierror with at most maxListedErrors entries.
func listErrors(es []error) string {
	var b strings.Builder
	for i, err := range es {
		if i == maxListedErrors {
			fmt.Fprintf(&b, "\n  ... and %d more", len(es)-i)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}
