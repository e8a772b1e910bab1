package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/go-multierror"
)

// judgeCanary runs the analysis of the canary batch, whose first k steps
// ran, then the pause and the promotion, or the rollback. It returns a
// non-empty reason when the rollout must stop.
func (br *batchRun) judgeCanary(ctx context.Context, k int) string {
	r, b := br.run, br.b
	p := r.e.Canary
	cs := r.w.canaryState()
	if cs.Phase == CanaryPromoted {
		return "" // a resume after the promotion: later failures are the batch's own
	}
	canaryFailed := r.failedSteps(b, k)
	hosts := slicesWithout(b.Hosts, canaryFailed)
	pos := Event{Batch: br.index + 1, Batches: br.of, Canary: true}
	say := func(kind EventKind, detail string) {
		ev := pos
		ev.Kind, ev.Detail, ev.Hosts = kind, detail, len(hosts)
		r.emit(ev)
	}
	abort := func(why string) string {
		r.log.Warn("canary failed: rolling back the canary hosts", "batch", br.index+1, "reason", why)
		say(EventCanaryFailed, why)
		cs.Phase, cs.Verdict = CanaryRollingBack, why
		r.w.saveCanary()
		undone := br.rollbackCanary(ctx, pos, k, why)
		result := "the canary hosts were rolled back"
		if undone {
			cs.Phase = CanaryRolledBack
		} else {
			result = "the rollback of a canary slot failed: put it back by hand as its error says (`haroll redeploy --image <old image> --slot <slot>` on that host)"
		}
		r.w.saveCanary()
		br.errs = multierror.Append(br.errs, fmt.Errorf("%w: %s: %s", ErrCanaryFailed, why, result))
		for _, h := range b.Hosts {
			br.failed[h] = true
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
			br.errs = multierror.Append(br.errs, err)
			r.unfinished = true
			return "the canary passed and its promotion was recorded, but it failed: " + err.Error() + "; `haroll rollout --resume` finishes the promotion once the canary hosts answer"
		}
		cs.Phase = CanaryPromoted
		r.w.saveCanary()
		say(EventCanaryPromoted, fmt.Sprintf("%d host(s) at their whole weight", len(hosts)))
		return ""
	}
	notRecorded := func(err error) string {
		br.errs = multierror.Append(br.errs, err)
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
	r.w.saveCanary()
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
		r.w.saveCanary()
		say(EventCanaryPaused, fmt.Sprintf("waiting for `haroll rollout promote` or `haroll rollout abort` (%s)", r.where))
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
				if fp, ok := a.(fencedPromoter); ok && r.fence != nil {
					err = fp.PromoteFenced(cctx, r.e.Origin, r.fence)
				} else {
					err = a.Promote(cctx, r.e.Origin)
				}
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

func slicesWithout(hosts []string, out map[string]bool) []string {
	return slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return out[h] })
}

func errorUnless(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
