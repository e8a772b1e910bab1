package rollout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Resume goes on with the rollout st records (read by LoadResumable) and
// keeps recording into the Store (or StateFile), with the fleet lock it
// holds now (Lease) noted in st. Pairs st records as finished are not
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
	r := newRun(e, e.store())
	e.noteLease(st)
	r.w.resume(st)
	r.waitBusy, r.prior, r.slots = true, map[pair]PairResult{}, st.Slots
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
		r.results[p.Host][si] = SlotResult{Slot: p.Slot, Result: p.Result, Duration: p.Duration, Error: p.Error, OldImage: p.OldImage}
		if slotOK(p.Result) {
			r.results[p.Host][si].Image, _ = r.imageFor(p.Host, p.Slot)
		}
	}
	res.Resumed = len(r.prior)
	r.rollingBack = st.RollingBack
	st.PID = os.Getpid()

	// The hosts left to ask: those with a pair not recorded, unless a
	// recorded failure in their batch ends them. The preflight keeps the
	// connections of the first batch with any.
	var unfinished, first []string
	for _, b := range st.Plan.Batches {
		left := r.pending(b)
		if first == nil {
			first = left
		}
		unfinished = append(unfinished, left...)
	}
	r.skipped = map[string]string{}
	defer func() {
		if r.endsClaims(ctx) { // every host of the rollout: the first run's claims too
			r.releaseClaims(st.Hosts)
		}
	}()
	if len(unfinished) > 0 {
		_, _, err := r.preflight(ctx, unfinished, st.Slots, inSet(first))
		if err != nil {
			return r.refused(res, st.Hosts, st.Plan, start, err)
		}
		defer r.renewClaims(ctx, unfinished)()
		// A rollout begun with its prepull done needs none; one begun
		// without (prepull off, or an earlier haroll) gets one if asked.
		if e.Prepull && !st.Prepulled {
			if err := r.prepull(ctx, unfinished, inSet(first)); err != nil {
				return r.refused(res, st.Hosts, st.Plan, start, err)
			}
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
