package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

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

// Dial opens the agent at host (an agent address, host:port). The executor
// dials a host for the preflight, and again when its batch is about to run
// (unless its batch is the first); if the Agent is an io.Closer, it is
// closed once the run is done with it: after the preflight, or after the
// host's last slot or its failure. If it has a Connect(ctx) error method
// (Client does), the executor calls it to establish the connection ahead of
// the host's first call, while the batch before runs its last step (as
// that batch's hosts finish it), or as the host's batch starts.
type Dial func(ctx context.Context, host string) (Agent, error)

// preflightConcurrency is the number of workers that dial hosts and ask
// their status at the preflight, and that dial a batch's hosts ahead of it:
// a fleet of thousands neither opens every connection nor starts a goroutine
// per host at once.
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
	// progress (see State) after every finished (host, slot) pair, unless
	// Store is set.
	StateFile string
	// Store, if set, is where the rollout's progress and its canary's
	// decisions are kept (a FileStore, or an EtcdStore, whose writes
	// need Lease); nil means the FileStore of StateFile, or none.
	Store Store
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
	// Lease, if set, is the fleet lock the rollout holds: checked before
	// every step (a lost lock stops the rollout there, ErrLockLost), and
	// carried to the agents as the fence of every request.
	Lease Lease
	// Prepull has every host pull the image (PrepullConcurrency at once,
	// default DefaultPrepullConcurrency) after the preflight and before the
	// first drain: a host that cannot get it stops the rollout with nothing
	// changed (ErrPrepull).
	Prepull            bool
	PrepullConcurrency int
	// OnFailure is what happens when failures pass MaxFailures: no further
	// batch (OnFailureStop, ""), and with OnFailureRollback the pairs this
	// rollout replaced in earlier batches are put back on their old image,
	// RollbackBatch hosts at a time (zero: all at once); with
	// OnFailurePause the rollout waits for `haroll rollout promote` (go on)
	// or `abort` (stop).
	OnFailure     string
	RollbackBatch Size
	// Images, if set, gives each (host, slot) pair its own image, keyed by
	// PairKey (a rollback to what each slot ran before); Image is then
	// empty, and a pair without an entry is left as it is (skipped).
	Images map[string]string
	// PreferStartFirst asks the agents for start-first wherever a slot
	// allows it (a rollback's fast track). The agents of this haroll do
	// that for every slot of strategy auto already, and never override a
	// slot set to stop-first: the flag is sent for the record.
	PreferStartFirst bool
	// ClaimTTL is how long a host stays claimed by the rollout after its
	// last request (0: the agent's default, an hour).
	ClaimTTL time.Duration
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
	if e.Image == "" && e.Images == nil || e.Dial == nil {
		return res, errors.New("rollout: an image (or per-pair Images) and a Dial are required")
	}
	if err := checkNames("host", hosts); err != nil {
		return res, err
	}
	store := e.store()
	r := newRun(e, store)
	defer r.close()
	if r.decisions != nil { // a decision left from an earlier rollout is not for this one
		dctx, cancel := context.WithTimeout(ctx, storeTimeout)
		if err := r.decisions.drop(dctx); err != nil {
			r.log.Warn("removing a canary decision left from an earlier rollout", "error", err)
		}
		cancel()
	}

	// Hosts are claimed from the preflight on: whatever ends the rollout
	// from here, their claims end with it, unless it may be resumed.
	defer func() {
		if r.endsClaims(ctx) {
			r.releaseClaims(hosts)
		}
	}()
	keep := inFirstBatch(hosts, strategy)
	ready, slots, err := r.preflight(ctx, hosts, slots, keep)
	res.Slots, r.slots = slots, slots
	if err != nil {
		return r.refused(res, hosts, Plan{}, start, err)
	}
	plan, err := NewPlan(ready, slots, strategy)
	if err != nil {
		return res, err
	}
	defer r.renewClaims(ctx, ready)()
	res.Plan = plan
	r.results = make(map[string][]SlotResult, len(ready))
	for _, h := range ready {
		r.results[h] = notRun(slots)
	}
	if err := r.checkWeights(plan); err != nil {
		return r.refused(res, hosts, plan, start, err)
	}
	if e.Prepull {
		if err := r.prepull(ctx, ready, keep); err != nil {
			return r.refused(res, hosts, plan, start, err)
		}
	}
	if err := r.preHook(ctx); err != nil {
		return r.refused(res, hosts, plan, start, err)
	}
	if store != nil {
		st := &State{Version: stateVersion, Image: e.Image, Force: e.Force, MaxFailures: e.MaxFailures.String(),
			Hosts: hosts, Skipped: r.skipped, Slots: slots, Plan: plan, Done: []PairResult{}, Started: start, PID: os.Getpid(),
			CanaryPolicy: e.Canary, Images: e.Images, OnFailure: e.OnFailure, Prepulled: e.Prepull}
		e.noteLease(st)
		if err := r.w.begin(st); err != nil {
			return r.refused(res, hosts, plan, start, fmt.Errorf("%w: %w", ErrPreflight, err))
		}
	}
	res, err = r.execute(ctx, hosts, plan, res, start)
	return r.postHook(ctx, res, err)
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
	r := newRun(e, nil)
	defer r.close()
	return r.preflight(ctx, hosts, slots, nil)
}

// noteLease records in st the fleet lock the rollout holds (a resume holds
// a new one): its rollout id, token and message, and its kind unless st
// has one.
func (e *Executor) noteLease(st *State) {
	if e.Lease == nil {
		return
	}
	info := e.Lease.Info()
	st.RolloutID, st.Token = info.RolloutID, info.Token
	if st.Kind == "" {
		st.Kind = info.Kind
	}
	if info.Message != "" {
		st.Message = info.Message
	}
}

func (e *Executor) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}
