package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/hashicorp/go-multierror"
)

// rollbackCanary puts the old image back on every canary slot of the canary
// hosts, step by step like a rollout, and records the slots as rolled back.
// A slot that already runs it (its agent rolled it back, or it was never
// replaced) is skipped by the agent. It reports whether every slot is back.
func (br *batchRun) rollbackCanary(ctx context.Context, pos Event, k int, why string) bool {
	r, b := br.run, br.b
	undone := true
	for si := k - 1; si >= 0; si-- {
		st := b.Steps[si]
		var wg sync.WaitGroup
		for _, h := range st.Hosts {
			old, ok := r.w.oldImage(h, st.Slot)
			if !ok {
				continue // never asked: nothing to undo
			}
			wg.Go(func() {
				at := pos
				at.Slot = st.Slot
				err := r.putBack(ctx, at, h, &agentpb.RedeployRequest{Image: old, Slots: []string{st.Slot},
					Origin: r.e.Origin + " (canary rollback)", Fence: r.undoFence()})
				sr := SlotResult{Slot: st.Slot, Result: ResultRolledBack, Error: "canary: " + why, Image: old}
				r.mu.Lock()
				if err != nil {
					undone = false
					sr.Result, sr.Image = ResultFailed, ""
					byHand := "put it back by hand"
					if errors.Is(err, ErrBusy) {
						byHand = "once the host is idle (`haroll status` on it says so), put it back by hand"
					}
					sr.Error = fmt.Sprintf("canary: %s; putting %s back failed: %v; %s: `haroll redeploy --image %s --slot %s` on that host", why, old, err, byHand, old, st.Slot)
					br.errs = multierror.Append(br.errs, fmt.Errorf("host %s slot %s: canary rollback to %s: %w", h, st.Slot, old, err))
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

// putBack asks h to run req (an old image on slot at.Slot) again. After a step timeout
// the agent may still be finishing the canary's own call and refuse with
// ErrBusy: putBack then waits for the host to go idle, for at most
// StepTimeout as Resume does, and asks once more. A host still busy then is
// an error wrapping ErrBusy that says how long it waited and with what.
func (r *run) putBack(ctx context.Context, at Event, h string, req *agentpb.RedeployRequest) error {
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
	if errors.Is(err, ErrFenced) { // a newer rollout owns the host: stop here
		return r.loseLock(fmt.Errorf("host %s: %w", h, err))
	}
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
