package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/haroll/haroll/agent/agentpb"
)

// CanaryPolicy says how the canary batch is run and judged. The canary
// batch first replaces its first Slots slots on every canary host, each at
// WeightPercent of its weight; then the canary hosts' HAProxy counters are
// read for Window, and the new servers' error rate is judged against
// MaxErrorRate and the old servers on the same hosts (Judge). A canary that
// passes (and, with Pause, that a person promotes) gets its whole weight
// back and the batch goes on; one that fails, or that a person aborts, is
// rolled back to the old image and the rollout stops, the rest of the fleet
// untouched.
type CanaryPolicy struct {
	// Slots replaced on each canary host before the analysis; the rest of
	// the canary hosts' slots are replaced after the promotion. Keep at
	// least one slot out, so that old servers on the same hosts compare.
	Slots int
	// WeightPercent, in 1..100, is the share of its weight a canary gets.
	WeightPercent int
	Window        time.Duration
	// Interval between two reads of the counters; zero means Window/10.
	Interval time.Duration
	// MaxErrorRate (0..1) is the error rate the new servers may reach;
	// they fail when above it AND above the old servers' rate + Margin.
	MaxErrorRate float64
	Margin       float64
	// MinRequests the new servers must serve in Window to be judged; fewer
	// fails the canary (it cannot be shown good).
	MinRequests int64
	// Pause waits after a passing analysis for Decide's answer.
	Pause bool
}

// Canary phases, as the state file records them.
const (
	CanaryAnalysis    = "analysis"
	CanaryPaused      = "paused"
	CanaryPromoting   = "promoting"
	CanaryPromoted    = "promoted"
	CanaryRollingBack = "rolling_back"
	CanaryRolledBack  = "rolled_back"
)

// Decisions a person gives a paused canary.
const (
	DecisionPromote = "promote"
	DecisionAbort   = "abort"
)

// CanaryState is the canary's progress in the state file.
type CanaryState struct {
	Phase   string  `json:"phase"`
	Verdict string  `json:"verdict,omitempty"`
	New     Traffic `json:"new"`
	Old     Traffic `json:"old"`
	// OldImages is what each canary (host, slot) ran before, for a rollback.
	OldImages map[string]string `json:"old_images,omitempty"` // "host slot" -> image
}

// Traffic is what a group of servers served during the analysis.
type Traffic struct {
	Requests int64 `json:"requests"` // responses + failed connections
	Errors   int64 `json:"errors"`   // 5xx + failed connections + failed responses
	Servers  int   `json:"servers"`
}

// Rate is Errors per request; 0 when nothing was served.
func (t Traffic) Rate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return math.Min(1, float64(t.Errors)/float64(t.Requests))
}

func (t Traffic) String() string {
	return fmt.Sprintf("%d errors / %d requests (%.2f%%) on %d server(s)", t.Errors, t.Requests, 100*t.Rate(), t.Servers)
}

// Judge decides a canary from what the new and the old servers served: it
// fails when the new servers served fewer than MinRequests, or when their
// error rate is above MaxErrorRate and above the old servers' by more than
// Margin. why says which figures decided.
func (p CanaryPolicy) Judge(newT, oldT Traffic) (pass bool, why string) {
	figures := fmt.Sprintf("new: %s; old: %s", newT, oldT)
	switch {
	case newT.Requests < p.MinRequests:
		return false, fmt.Sprintf("the new servers served %d requests, fewer than min_requests %d: not enough traffic to judge (%s)", newT.Requests, p.MinRequests, figures)
	case newT.Rate() > p.MaxErrorRate && newT.Rate() > oldT.Rate()+p.Margin:
		return false, fmt.Sprintf("the new servers' error rate %.2f%% is above max_error_rate %.2f%% and above the old servers' %.2f%% by more than %.2f%% (%s)",
			100*newT.Rate(), 100*p.MaxErrorRate, 100*oldT.Rate(), 100*p.Margin, figures)
	}
	return true, figures
}

// counterTally turns the cumulative counters of one slot into what it
// served since the first sample. A counter that went down means HAProxy
// reloaded and started again from 0: what it shows is all new.
type counterTally struct {
	last  *agentpb.SlotCounters
	total Traffic
}

func (c *counterTally) add(s *agentpb.SlotCounters) {
	if s.GetError() != "" {
		return
	}
	if c.last != nil {
		delta := func(now, before int64) int64 {
			if now < before {
				return now
			}
			return now - before
		}
		econ := delta(s.GetEcon(), c.last.GetEcon())
		c.total.Requests += delta(s.GetResponses(), c.last.GetResponses()) + econ
		c.total.Errors += delta(s.GetHrsp_5Xx(), c.last.GetHrsp_5Xx()) + econ + delta(s.GetEresp(), c.last.GetEresp())
	}
	c.last = s
}

// canaryKey names a (host, slot) pair in CanaryState.OldImages.
func canaryKey(host, slot string) string { return host + " " + slot }

// canarySteps is how many of b's steps run before the analysis.
func (p *CanaryPolicy) canarySteps(b Batch) int {
	if p == nil || !b.Canary {
		return -1
	}
	return max(1, min(p.Slots, len(b.Steps)))
}

// judgeCanary runs the analysis of the canary batch b, whose first k steps
// ran, then the pause and the promotion, or the rollback. It returns a
// non-empty reason when the rollout must stop.
func (r *run) judgeCanary(ctx context.Context, bi, nb int, b Batch, k int, failed map[string]bool, errs **multierror.Error) string {
	p := r.e.Canary
	cs := r.canaryState()
	if cs.Phase == CanaryPromoted {
		return "" // a resume after the promotion: later failures are the batch's own
	}
	canaryFailed := r.failedSteps(b, k)
	hosts := slicesWithout(b.Hosts, canaryFailed)
	pos := Event{Batch: bi + 1, Batches: nb, Canary: true}
	say := func(kind EventKind, detail string) {
		ev := pos
		ev.Kind, ev.Detail, ev.Hosts = kind, detail, len(hosts)
		r.emit(ev)
	}
	abort := func(why string) string {
		r.log.Warn("canary failed: rolling back the canary hosts", "batch", bi+1, "reason", why)
		say(EventCanaryFailed, why)
		cs.Phase, cs.Verdict = CanaryRollingBack, why
		r.saveCanary(cs)
		undone := r.rollbackCanary(ctx, pos, b, k, cs, why, errs)
		result := "the canary hosts were rolled back"
		if undone {
			cs.Phase = CanaryRolledBack
		} else {
			result = "the rollback of a canary slot failed: put it back by hand as its error says (`haroll redeploy --image <old image> --slot <slot>` on that host)"
		}
		r.saveCanary(cs)
		*errs = multierror.Append(*errs, fmt.Errorf("%w: %s: %s", ErrCanaryFailed, why, result))
		for _, h := range b.Hosts {
			failed[h] = true
		}
		return "canary failed: " + why
	}
	promote := func() string {
		if err := r.promote(ctx, hosts); err != nil {
			if ctx.Err() != nil { // decided and recorded: a resume finishes it
				return "cancelled while promoting the canary: `haroll rollout --resume` finishes the promotion"
			}
			// Once recorded, the promotion is what an abort was refused
			// for: it is finished by a resume, never turned into a rollback.
			*errs = multierror.Append(*errs, err)
			r.unfinished = true
			return "the canary passed and its promotion was recorded, but it failed: " + err.Error() + "; `haroll rollout --resume` finishes the promotion once the canary hosts answer"
		}
		cs.Phase = CanaryPromoted
		r.saveCanary(cs)
		say(EventCanaryPromoted, fmt.Sprintf("%d host(s) at their whole weight", len(hosts)))
		return ""
	}
	notRecorded := func(err error) string {
		*errs = multierror.Append(*errs, err)
		return "the canary passed, but its promotion could not be recorded in the state file, so nothing was promoted: the canary hosts run the new image at their share; make the state file writable, then `haroll rollout --resume` (or `haroll rollout abort`): " + err.Error()
	}
	switch {
	case cs.Phase == CanaryRollingBack || cs.Phase == CanaryRolledBack:
		return abort(cs.Verdict) // a resume of a rollback
	case cs.Phase == CanaryPromoting:
		// A resume after the promotion was decided: aborts have been
		// refused as too late since, so it goes on.
		say(EventCanaryPassed, cs.Verdict+" (decided before the resume)")
		return promote()
	case len(canaryFailed) > 0:
		return abort(fmt.Sprintf("%d of %d canary host(s) failed their canary slot", len(canaryFailed), len(b.Hosts)))
	}
	cs.Phase = CanaryAnalysis
	r.saveCanary(cs)
	say(EventCanaryAnalysis, fmt.Sprintf("reading HAProxy counters of %d host(s) for %s", len(hosts), p.Window))
	newT, oldT, decided, err := r.analyse(ctx, hosts, b, k)
	cs.New, cs.Old = newT, oldT
	switch {
	case ctx.Err() != nil:
		return "cancelled during the canary analysis: the canary hosts run the new image at their share; `haroll rollout --resume` judges them again (`haroll rollout abort` first rolls them back)"
	case decided == DecisionAbort:
		return abort("aborted by a person during the analysis")
	case err != nil:
		return abort("the analysis failed: " + err.Error())
	}
	pass, why := p.Judge(newT, oldT)
	if !pass {
		return abort(why)
	}
	say(EventCanaryPassed, why)
	// The decision and the record of the promotion are one step with
	// Decide's (see lockDecisions): from the record on, an abort is refused.
	if p.Pause {
		cs.Phase, cs.Verdict = CanaryPaused, why
		r.saveCanary(cs)
		say(EventCanaryPaused, fmt.Sprintf("waiting for `haroll rollout promote` or `haroll rollout abort` (state file %s)", r.e.StateFile))
		d, err := r.awaitDecision(ctx, cs, why)
		switch {
		case errors.Is(err, ErrState):
			return notRecorded(err)
		case err != nil:
			return "cancelled while paused after the canary: `haroll rollout --resume` judges it again and waits for promote or abort"
		case d == DecisionAbort:
			return abort("aborted by a person after the analysis passed")
		}
	} else {
		d, err := r.decide(cs, why, true, DecisionAbort)
		switch {
		case errors.Is(err, ErrState):
			return notRecorded(err)
		case err != nil:
			return abort("a person's decision could not be read, so an abort cannot be ruled out: " + err.Error())
		case d == DecisionAbort: // written as the window ended
			return abort("aborted by a person during the analysis")
		}
	}
	return promote()
}

// checkWeights refuses, before any host is touched, a canary whose share
// of a canary slot's weight (as its agent reported it at the preflight)
// would be that whole weight: the new image would take all the traffic the
// server takes now. The agent refuses it too, but only once the canary
// batch runs, after other canary slots may have been replaced. A server at
// weight 0 takes none and stays at 0 (the agent's canary gives it no
// traffic); the analysis counts it as a new server that served nothing.
func (r *run) checkWeights(plan Plan) error {
	p := r.e.Canary
	if p == nil || p.WeightPercent >= 100 {
		return nil
	}
	var problems *multierror.Error
	for _, b := range plan.Batches {
		k := p.canarySteps(b)
		if k < 0 {
			continue
		}
		for _, st := range b.Steps[:k] {
			for _, h := range st.Hosts {
				w := r.statusWeight(h, st.Slot)
				// As the agent computes it (agent.CanaryWeight): rounded up, at least 1.
				if share := max(1, (w*p.WeightPercent+99)/100); w > 0 && share >= w {
					problems = multierror.Append(problems, fmt.Errorf("host %s slot %s: weight %d at %d%% is a canary weight of %d, the server's whole weight, so it would be no canary: "+
						"raise the servers' weights in HAProxy (at weight %d, %d%% is %d), or run the canary at its whole weight on purpose with --canary-weight 100%% (canary.weight: 100%%)",
						h, st.Slot, w, p.WeightPercent, share, 100/gcd(100, p.WeightPercent), p.WeightPercent, p.WeightPercent/gcd(100, p.WeightPercent)))
				}
			}
		}
	}
	if problems.ErrorOrNil() == nil {
		return nil
	}
	problems.ErrorFormat = listErrors
	return fmt.Errorf("%w: %w", ErrPreflight, problems)
}

// statusWeight is slot's whole weight on h as the preflight's status said
// (its full weight when it runs a canary); 0 if unknown.
func (r *run) statusWeight(h, slot string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.statuses[h].GetSlots() {
		if s.GetSlot() == slot {
			if s.GetCanary() {
				return int(s.GetFullWeight())
			}
			return int(s.GetWeight())
		}
	}
	return 0
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// failedSteps are the hosts of b whose slot failed in one of its first k
// steps (the canary steps), in this run or before a resume.
func (r *run) failedSteps(b Batch, k int) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, st := range b.Steps[:k] {
		si := r.slotIndex(st.Slot)
		for _, h := range st.Hosts {
			if res := r.results[h]; si >= 0 && si < len(res) && res[si].Result != ResultNotRun && !slotOK(res[si].Result) {
				out[h] = true
			}
		}
	}
	return out
}

// analyse streams the counters of every host for the window, and sums what
// the canary slots (the first k steps' slots) served, and what the other
// slots of the rollout in the same HAProxy backends served. It stops early
// when a person aborts.
func (r *run) analyse(ctx context.Context, hosts []string, b Batch, k int) (newT, oldT Traffic, decided string, err error) {
	p := r.e.Canary
	every := p.Interval
	if every <= 0 {
		every = max(p.Window/10, 100*time.Millisecond)
	}
	canarySlots := map[string]bool{}
	for _, st := range b.Steps[:k] {
		canarySlots[st.Slot] = true
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	tallies := map[string]*counterTally{} // "host slot"
	backends := map[string]string{}       // "host slot" -> backend
	var streamErrs *multierror.Error
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			a, err := r.connect(actx, h)
			if err == nil {
				// The agent sends a sample at once, every interval, and a
				// last one when the window has passed: it ends the stream.
				err = a.Counters(actx, every, p.Window, func(s *agentpb.CountersSample) {
					mu.Lock()
					defer mu.Unlock()
					for _, c := range s.GetSlots() {
						key := canaryKey(h, c.GetSlot())
						if tallies[key] == nil {
							tallies[key] = &counterTally{}
						}
						tallies[key].add(c)
						backends[key] = c.GetBackend()
					}
				})
			}
			if err != nil && actx.Err() == nil {
				mu.Lock()
				streamErrs = multierror.Append(streamErrs, fmt.Errorf("host %s: counters: %w", h, err))
				mu.Unlock()
			}
		})
	}
	streams := make(chan struct{})
	go func() { wg.Wait(); close(streams) }()
	// The streams end on their own; this bounds an agent that stops sending.
	late := time.NewTimer(p.Window + 2*every + max(r.e.ConnectTimeout, time.Second))
	defer late.Stop()
	poll := time.NewTicker(decisionPoll)
	defer poll.Stop()
wait:
	for {
		select {
		case <-streams:
			break wait
		case <-ctx.Done():
			break wait
		case <-late.C:
			mu.Lock()
			streamErrs = multierror.Append(streamErrs, fmt.Errorf("a host's counters did not end within %s after the window", 2*every+max(r.e.ConnectTimeout, time.Second)))
			mu.Unlock()
			break wait
		case <-poll.C:
			if d, _ := r.takeDecision(DecisionAbort); d == DecisionAbort {
				decided = d
				break wait
			}
		}
	}
	cancel()
	<-streams
	mu.Lock()
	defer mu.Unlock()
	for key, t := range tallies {
		host, slot, _ := strings.Cut(key, " ")
		if !slices.Contains(hosts, host) {
			continue
		}
		sum := &newT
		if !canarySlots[slot] {
			if !slices.Contains(r.slots, slot) || !r.sameBackend(host, backends[key], canarySlots, backends) {
				continue // not rolled by this rollout, or behind another backend: no comparison
			}
			sum = &oldT
		}
		sum.Requests += t.total.Requests
		sum.Errors += t.total.Errors
		sum.Servers++
	}
	return newT, oldT, decided, streamErrs.ErrorOrNil()
}

// sameBackend reports whether backend is one of the backends of host's
// canary slots (an agent that reports no backend counts as the same).
func (r *run) sameBackend(host, backend string, canarySlots map[string]bool, backends map[string]string) bool {
	if backend == "" {
		return true
	}
	for slot := range canarySlots {
		if b := backends[canaryKey(host, slot)]; b == "" || b == backend {
			return true
		}
	}
	return false
}

// promote gives every canary host's canary slots their whole weight back.
func (r *run) promote(ctx context.Context, hosts []string) error {
	var mu sync.Mutex
	var errs *multierror.Error
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			cctx, cancel := within(ctx, r.e.StepTimeout)
			defer cancel()
			a, err := r.connect(cctx, h)
			if err == nil {
				err = a.Promote(cctx, r.e.Origin)
			}
			if err != nil {
				mu.Lock()
				errs = multierror.Append(errs, fmt.Errorf("host %s: promote: %w", h, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs.ErrorOrNil()
}

// rollbackCanary puts the old image back on every canary slot of the canary
// hosts, step by step like a rollout, and records the slots as rolled back.
// A slot that already runs it (its agent rolled it back, or it was never
// replaced) is skipped by the agent. It reports whether every slot is back.
func (r *run) rollbackCanary(ctx context.Context, pos Event, b Batch, k int, cs *CanaryState, why string, errs **multierror.Error) bool {
	undone := true
	for si := k - 1; si >= 0; si-- {
		st := b.Steps[si]
		var wg sync.WaitGroup
		for _, h := range st.Hosts {
			r.stateMu.Lock()
			old, ok := cs.OldImages[canaryKey(h, st.Slot)]
			r.stateMu.Unlock()
			if !ok {
				continue // never asked: nothing to undo
			}
			wg.Go(func() {
				at := pos
				at.Slot = st.Slot
				err := r.putBack(ctx, at, h, old)
				sr := SlotResult{Slot: st.Slot, Result: ResultRolledBack, Error: "canary: " + why}
				r.mu.Lock()
				if err != nil {
					undone = false
					sr.Result = ResultFailed
					byHand := "put it back by hand"
					if errors.Is(err, ErrBusy) {
						byHand = "once the host is idle (`haroll status` on it says so), put it back by hand"
					}
					sr.Error = fmt.Sprintf("canary: %s; putting %s back failed: %v; %s: `haroll redeploy --image %s --slot %s` on that host", why, old, err, byHand, old, st.Slot)
					*errs = multierror.Append(*errs, fmt.Errorf("host %s slot %s: canary rollback to %s: %w", h, st.Slot, old, err))
				}
				r.results[h][r.slotIndex(st.Slot)] = sr
				r.mu.Unlock()
				ev := pos
				ev.Kind, ev.Host, ev.Slot, ev.Result, ev.Detail, ev.Err = EventCanaryRollback, h, st.Slot, sr.Result, "back to "+old, errorUnless(err)
				r.emit(ev)
			})
		}
		wg.Wait()
	}
	return undone
}

// putBack asks h to run old on slot at.Slot again. After a step timeout
// the agent may still be finishing the canary's own call and refuse with
// ErrBusy: putBack then waits for the host to go idle, for at most
// StepTimeout as Resume does, and asks once more. A host still busy then is
// an error wrapping ErrBusy that says how long it waited and with what.
func (r *run) putBack(ctx context.Context, at Event, h, old string) error {
	req := &agentpb.RedeployRequest{Image: old, Slots: []string{at.Slot}, Origin: r.e.Origin + " (canary rollback)"}
	ask := func() (Agent, error) {
		sctx, cancel := within(ctx, r.e.StepTimeout)
		defer cancel()
		a, err := r.connect(sctx, h)
		if err == nil {
			_, err = a.Redeploy(sctx, req, r.phases(at, h))
		}
		return a, err
	}
	a, err := ask()
	if !errors.Is(err, ErrBusy) {
		return err
	}
	busy := strings.TrimPrefix(err.Error(), ErrBusy.Error()+": ")
	r.log.Warn("canary rollback: the host is still busy, waiting for it to go idle", "host", h, "slot", at.Slot, "busy", busy)
	st, err := r.waitIdle(ctx, a, h, &agentpb.StatusResponse{Busy: busy})
	if err != nil {
		return err
	}
	if st.GetBusy() != "" {
		return fmt.Errorf("%w: still busy after waiting %s (step_timeout): %s", ErrBusy, r.e.StepTimeout, st.GetBusy())
	}
	_, err = ask()
	return err
}

// canaryState returns the canary's recorded progress, or a new one.
func (r *run) canaryState() *CanaryState {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.canary == nil {
		if r.state != nil && r.state.Canary != nil {
			r.canary = r.state.Canary
		} else {
			r.canary = &CanaryState{OldImages: map[string]string{}}
		}
		if r.state != nil { // persisted with every pair from now on
			r.state.Canary = r.canary
		}
	}
	if r.canary.OldImages == nil {
		r.canary.OldImages = map[string]string{}
	}
	return r.canary
}

// noteOldImage remembers what a canary slot ran before it is replaced, and
// writes it to the state file at once when it is news: a rollback must
// know it whatever becomes of the call.
func (r *run) noteOldImage(host, slot, image string) error {
	if image == "" || image == r.e.Image {
		return nil // unknown, or already the new image: nothing to put back
	}
	cs := r.canaryState()
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	key := canaryKey(host, slot)
	if cs.OldImages[key] == image {
		return nil
	}
	cs.OldImages[key] = image
	if r.state == nil {
		return nil
	}
	if err := r.saveLocked(); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
}

// saveCanary records cs in the state file, when there is one.
func (r *run) saveCanary(cs *CanaryState) {
	if r.state == nil {
		return
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	r.state.Canary = cs
	if err := r.saveLocked(); err != nil && r.stateErr == nil {
		r.log.Error("state file not written", "error", err)
		r.stateErr = fmt.Errorf("%w: %w", ErrState, err)
	}
}

func (r *run) slotIndex(slot string) int {
	for i, s := range r.slots {
		if s == slot {
			return i
		}
	}
	return -1
}

func slicesWithout(hosts []string, out map[string]bool) []string {
	return slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return out[h] })
}

func errorUnless(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
