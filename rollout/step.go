package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

// step replaces one slot on every host in parallel, under StepTimeout, and
// returns the hosts that failed with their errors. canary steps give the
// new containers CanaryPolicy.WeightPercent of their weight. done is called
// with each host's outcome (nil: replaced or skipped) as soon as it is known.
func (r *run) step(ctx context.Context, log *slog.Logger, pos Event, si int, hosts []string, canary bool, done func(h string, err error)) map[string]error {
	sctx, cancel := within(ctx, r.e.StepTimeout)
	defer cancel()
	var mu sync.Mutex
	failed := map[string]error{}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			sr, err := r.redeploy(ctx, sctx, pos, h, canary)
			done(h, err)
			r.mu.Lock()
			r.results[h][si] = sr
			r.mu.Unlock()
			// A call cut short by the coordinator stopping is not finished:
			// a resume asks it again.
			if ctx.Err() == nil || sr.Result != ResultError {
				r.w.record(PairResult{Batch: pos.Batch, Host: h, Slot: pos.Slot, Result: sr.Result, Error: sr.Error,
					Duration: sr.Duration, Finished: time.Now(), OldImage: sr.OldImage})
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
	a, err := r.conns.get(sctx, h)
	if err != nil {
		sr.Error = err.Error()
		return sr, fmt.Errorf("host %s slot %s: %w", h, pos.Slot, err)
	}
	image, ok := r.imageFor(h, pos.Slot)
	if !ok { // a rollback that has nothing to put back on this pair
		sr.Result = ResultSkipped
		return sr, nil
	}
	req := &agentpb.RedeployRequest{Image: image, Slots: []string{pos.Slot}, Force: r.e.Force, Origin: r.e.Origin,
		Fence: r.fence, PreferStartFirst: r.e.PreferStartFirst}
	if canary && r.e.Canary.WeightPercent < 100 {
		req.CanaryWeightPercent = int32(r.e.Canary.WeightPercent)
	}
	if canary {
		// Recorded before the call: whatever becomes of it (a step timeout
		// while the agent goes on, a coordinator crash before the pair is
		// recorded), a rollback knows what the slot ran.
		if err := r.w.noteOldImage(h, pos.Slot, r.statusImage(h, pos.Slot), r.e.Image); err != nil {
			sr.Error = err.Error()
			return sr, fmt.Errorf("host %s slot %s: %w", h, pos.Slot, err)
		}
	}
	t0 := time.Now()
	rep, err := a.Redeploy(sctx, req, r.phases(pos, h))
	if errors.Is(err, ErrFenced) { // the host has seen a newer rollout: this one lost its lock
		_ = r.loseLock(fmt.Errorf("host %s: %w", h, err))
	}
	sr.Duration = time.Since(t0)
	for _, s := range rep.GetSlots() {
		if s.GetSlot() != pos.Slot {
			continue
		}
		sr.Result, sr.Error, sr.OldImage = s.ResultName(), s.GetError(), s.GetOldImage()
		if canary && sr.Result == ResultReplaced {
			_ = r.w.noteOldImage(h, pos.Slot, sr.OldImage, r.e.Image) // the agent's word; persisted with the pair
		}
		if d := s.GetTotal().AsDuration(); d > 0 {
			sr.Duration = d
		}
		sr.Phases = make(map[string]time.Duration, len(s.GetPhases()))
		for p, d := range s.GetPhases() {
			sr.Phases[p] = d.AsDuration()
		}
	}
	// The agent's end of the deadline (gRPC's grpc-timeout) may answer a
	// moment before this end's fires: DeadlineExceeded, or Canceled when
	// the agent saw its caller go (a pull it stopped, "image pull
	// cancelled"). Either is the step timeout too.
	deadline, bounded := sctx.Deadline()
	agentEnded := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	timedOut := sctx.Err() != nil || bounded && agentEnded && time.Until(deadline) < time.Second
	switch {
	case err != nil && timedOut && ctx.Err() == nil:
		err = fmt.Errorf("%w: no report within %s, the agent finishes or rolls back the slot on its own (or, still pulling the image, stops with nothing changed): %w", ErrStepTimeout, r.e.StepTimeout, err)
	case err == nil && !slotOK(sr.Result):
		err = fmt.Errorf("%w: result %q", ErrSlotFailed, sr.Result)
	}
	switch sr.Result {
	case ResultReplaced, ResultSkipped:
		sr.Image = image
	case ResultRolledBack: // the old container serves again
		sr.Image = sr.OldImage
		if sr.Image == "" {
			sr.Image = r.statusImage(h, pos.Slot)
		}
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
		ev.Kind, ev.Host, ev.Phase, ev.Duration, ev.Detail, ev.Err = EventPhase, h, p.PhaseName(),
			p.GetDuration().AsDuration(), p.GetDetail(), p.GetError()
		if p.GetSlot() != "" {
			ev.Slot = p.GetSlot()
		}
		r.emit(ev)
	}
}
