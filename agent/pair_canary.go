package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/haroll/haroll/docker"
)

// A canary of a blue/green slot is a surge that stops half way: the new side
// is proven as in every surge, then gets the canary's share of the slot's
// weight while the old side serves on at its whole weight, its container
// kept. The canary record (Canary.Surge) holds the surge's journal entry, so
// that either end is open to it later:
//
//   - Promote gives the new side the whole weight and retires the old side,
//     as a surge's retirement does (persistence-safe drain, maintenance,
//     the old container removed), under the retirement's journal;
//   - a redeploy of the image the old side runs (what a fleet rollout's
//     canary rollback asks for) undoes the new side: drained
//     persistence-safe, put back in maintenance with its weight, its
//     container removed and the old one given the slot's name back, under
//     the surge's journal. The old side was never touched.
//
// Any other image is refused until one of the two has ended the canary.

// canaryPair is what preflight found out about a blue/green slot that runs a
// canary: both sides serve.
type canaryPair struct {
	canary Canary
	// old is the old side's container (under its aside name), which serves
	// at the whole weight; the plan's old is the new side's, the canary.
	old docker.Container
	// oldDown says why the old side does not serve now (nil: it does): an
	// undo would then leave the slot with no side.
	oldDown error
}

// finishCanarySurge ends a canary's surge: it records the canary, the
// surge's entry in it, before the new side gets its share (a crash in
// between must not forget the old side), gives the share, saves the
// servers' states and forgets the surge: the canary record covers the slot
// from then on.
func (r *replacement) finishCanarySurge(ctx context.Context) error {
	a, pe := r.a, r.e.Pair
	share := r.finalWeight()
	if err := r.step(PhaseRestore, func() (detail string, err error) {
		var e Entry
		_ = r.hold(func() error { e = r.e; r.serving = share; return nil })
		// As the slot stands once the share is given: proven, serving.
		e.Drained, e.Maint, e.Failure = false, false, ""
		c := Canary{Slot: r.p.slot.Name, Image: r.image, FullWeight: r.e.Full, Weight: share, Since: time.Now(), Surge: &e}
		if err := a.setCanary(c); err != nil {
			return "", err
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.grace)
		defer cancel()
		err = a.retry(rctx, r.log, "give the new side its canary share", func() (err error) {
			detail, err = r.giveBack(rctx, share)
			return err
		})
		return fmt.Sprintf("%s on %s beside %s (at weight %d, untouched)", detail, pe.Idle, pe.Live, r.e.Full), err
	}); err != nil {
		return err
	}
	if share == 0 {
		// A canary of a server the operator drained: the new side stays at
		// weight 0, out of HAProxy's balancing but up.
		r.log.Warn("canary of a blue/green slot at weight 0: the new side gets no traffic", "slot", r.p.slot.Name)
	}
	if err := r.saveState(ctx); err != nil {
		return err
	}
	return r.journal.Clear()
}

// checkPairCanary is checkPair for a blue/green slot that runs the canary c:
// the new side's container is the slot's, and the old side's still exists.
// What the redeploy does with it (skip, undo, refuse) depends on the
// requested image, known once it is pulled (decidePairCanary).
func (a *Agent) checkPairCanary(ctx context.Context, s SlotConfig, c Canary) (plan, error) {
	e := c.Surge
	p := plan{slot: s, startFirst: true}
	cur, err := a.docker.Inspect(ctx, s.Container)
	if err != nil {
		return p, err
	}
	if err := a.checkCanaryRecord(s, c, cur); err != nil {
		return p, err
	}
	old, err := a.docker.Inspect(ctx, e.OldID)
	if err != nil {
		return p, fmt.Errorf("blue/green slot runs a canary of %s beside the old container %s, which cannot be read (%w): promote the canary (`haroll rollout promote`) to make the new side the only one", c.Image, shortID(e.OldID), err)
	}
	srv, err := a.haproxy.Server(ctx, s.Backend, e.Pair.Idle)
	if err != nil {
		return p, err
	}
	p.old, p.weight, p.full, p.addr = cur, srv.Weight, c.FullWeight, srv.Addr
	p.pair = &pairPlan{live: e.Pair.Live, idle: e.Pair.Idle, stateFile: e.Pair.StateFile}
	p.canaryPair = &canaryPair{canary: c, old: old, oldDown: a.sideServes(ctx, s.Backend, e.Pair.Live, old.ID)}
	return p, nil
}

// checkCanaryRecord checks that blue/green canary c still describes the
// host: the slot's container (cur) is its new one. A record left behind by
// an undo or a promotion whose last write failed names a container that is
// no longer the slot's.
func (a *Agent) checkCanaryRecord(s SlotConfig, c Canary, cur docker.Container) error {
	if cur.ID == c.Surge.NewID {
		return nil
	}
	return fmt.Errorf("blue/green slot's canary record (%s) names %s as the canary of %s, but container %s is %s now: the record is stale (an undo or a promotion whose last step failed); check with `haroll status` which side serves, then remove the slot's entry from %s (the whole file if it is the only one) and retry",
		canaryFile, shortID(c.Surge.NewID), c.Image, s.Container, shortID(cur.ID), a.cfg.StateDir+"/"+canaryFile)
}

// sideServes says why server (one side of a pair) does not serve now, nil
// when it does: its container (id) running, and HAProxy has the server out
// of maintenance, fully UP by its own checks, at a weight.
func (a *Agent) sideServes(ctx context.Context, backend, server, id string) error {
	c, err := a.docker.Inspect(ctx, id)
	switch {
	case err != nil:
		return fmt.Errorf("container %s: %w", shortID(id), err)
	case !c.Running:
		return fmt.Errorf("container %s is not running", shortID(id))
	}
	srv, err := a.haproxy.Server(ctx, backend, server)
	if err != nil {
		return err
	}
	if !srv.FullyUp() || srv.Weight == 0 || srv.InMaint() {
		return fmt.Errorf("%s/%s is %s at weight %d (check %s)", backend, server, srv.Status, srv.Weight, srv.CheckStatus)
	}
	return nil
}

// decidePairCanary says what a redeploy of imageID does to the blue/green
// canary of p (not skipped: the image is not the canary's): the old side's
// image undoes the canary; any other is refused.
func decidePairCanary(p plan, image, imageID string) error {
	cp := p.canaryPair
	if cp.old.ImageID == imageID {
		if cp.oldDown != nil {
			return fmt.Errorf("undoing the canary of %s would leave the slot no side that serves: the old side %s does not serve (%v); promote the canary instead, or bring the old side back first",
				cp.canary.Image, cp.canary.Surge.Pair.Live, cp.oldDown)
		}
		return nil
	}
	e := cp.canary.Surge
	return fmt.Errorf("blue/green slot runs a canary of %s on %s (weight %d) beside %s on %s (weight %d): %s is neither; end the canary first: promote it (`haroll rollout promote`, or a rollout that passes it), or undo it by redeploying %s to the slot",
		cp.canary.Image, e.Pair.Idle, cp.canary.Weight, cp.old.Image, e.Pair.Live, cp.canary.FullWeight, image, cp.old.Image)
}

// errCanaryUndone is why a canary's new side is rolled back on request.
var errCanaryUndone = errors.New("the canary is undone: its old image was redeployed")

// undoPairCanary undoes the canary of blue/green slot p: the new side is
// drained persistence-safe (weight 0 for drain.grace, maintenance, empty),
// then rolled back as a failed surge is (its container removed, the old one
// given the slot's name back, the new side's server its weight back in
// maintenance). The old side, which served at its whole weight all along,
// is not touched. The surge's journal covers every step: a crash is rolled
// back by the next recovery.
func (a *Agent) undoPairCanary(ctx context.Context, p plan, _ string, events func(Event), _ *cleaner) replaceResult {
	cp := p.canaryPair
	e := *cp.canary.Surge
	r := a.newReplacement(pairPlanOf(p.slot, e, e.Pair.Idle), e.Image, events)
	r.journal = a.pairJournal(surgeJournal, p.slot.Name)
	r.e = e
	r.e.Proven, r.e.DrainMode, r.e.Drained, r.e.Maint, r.e.Failure = false, DrainWeight, false, false, ""
	r.report.OldContainer, r.report.OldImage = p.old.ID, p.old.Image // the canary's
	begin := time.Now()
	stopGuard := r.guard(ctx)
	defer stopGuard()
	res := func(err error) replaceResult {
		r.report.Total = time.Since(begin)
		if err != nil {
			r.report.Result, r.report.Err = ResultFailed, err.Error()
			return replaceResult{report: r.report, err: err}
		}
		r.report.Result, r.report.NewContainer = ResultReplaced, e.OldID
		return replaceResult{report: r.report}
	}
	// The journal first: from here a crash rolls the new side back.
	if err := r.record(PhaseDrain, func(e *Entry) { e.Drained = true }); err != nil {
		return res(err)
	}
	if err := a.setCanary(Canary{Slot: p.slot.Name}); err != nil {
		return res(fmt.Errorf("%w; the journal in %s holds the undo: `haroll recover` finishes it", err, a.cfg.StateDir))
	}
	if err := r.undoCanary(ctx); err != nil {
		return res(err)
	}
	return res(nil)
}

// undoCanary drains the new side of a canary persistence-safe (weight 0 for
// drain.grace, maintenance, empty) and rolls it back as a failed surge is;
// the undo is journaled (Drained) before.
func (r *replacement) undoCanary(ctx context.Context) error {
	a, s, pe := r.a, r.p.slot, r.e.Pair
	drainErr := r.step(PhaseDrain, func() (string, error) {
		if err := r.hold(func() error {
			if r.e.Maint { // a recovery may find it in maintenance already
				return nil
			}
			return a.haproxy.SetWeight(ctx, s.Backend, s.Server, 0)
		}); err != nil {
			return "", err
		}
		detail, err := r.awaitDrain(ctx)
		return detail + " (canary's new side " + s.Server + "; " + pe.Live + " serves on)", err
	})
	cause := errCanaryUndone
	if drainErr != nil {
		// The new side goes anyway: rollbackSurge empties it in maintenance.
		cause = fmt.Errorf("%w (its drain: %v)", errCanaryUndone, drainErr)
	}
	return r.rollbackSurge(ctx, cause)
}

// undoing reports whether surge journal entry e is the undo of a canary
// (undoPairCanary journals it so): unproven, at the drain, which no surge
// of its own reaches before its gate.
func undoing(e Entry) bool {
	return e.Canary && !e.Proven && e.Phase == PhaseDrain
}

// promotePair gives the new side of blue/green canary c its whole weight,
// saves the servers' states, and retires the old side as a surge's
// retirement does, under the retirement's journal (written before the
// canary record is forgotten).
func (a *Agent) promotePair(ctx context.Context, s SlotConfig, c Canary) error {
	e := *c.Surge
	// The canary is promoted only while it serves: else the retirement
	// would drain the only side that does.
	cur, err := a.docker.Inspect(ctx, s.Container)
	if err != nil {
		return err
	}
	if err := a.checkCanaryRecord(s, c, cur); err != nil {
		return err
	}
	if err := a.sideServes(ctx, s.Backend, e.Pair.Idle, e.NewID); err != nil {
		return fmt.Errorf("the canary's new side does not serve (%w), so it is not promoted and the old side %s serves on: undo the canary (`haroll rollout abort`, or `haroll redeploy --slot %s --image %s`)",
			err, e.Pair.Live, s.Name, e.OldImage)
	}
	ns := a.newReplacement(pairPlanOf(s, e, e.Pair.Idle), e.Image, a.observed(nil))
	ns.e = e
	ns.e.Drained, ns.e.Maint = false, false // it serves: nothing to hold it to but its weight
	stopGuard := ns.guard(ctx)
	_ = ns.hold(func() error { ns.serving = c.FullWeight; return nil })
	err = a.retry(ctx, a.log, "promote "+s.Name, func() error {
		return ns.hold(func() error { return a.haproxy.SetWeight(ctx, s.Backend, e.Pair.Idle, c.FullWeight) })
	})
	if err == nil {
		err = ns.saveState(ctx)
	}
	stopGuard()
	if err != nil {
		return fmt.Errorf("promote the new side %s/%s to weight %d: %w", s.Backend, e.Pair.Idle, c.FullWeight, err)
	}
	ret := a.newRetirement(ns, e.Pair.Live)
	if err := ret.record(PhaseDrain, nil); err != nil {
		return err
	}
	if err := a.setCanary(Canary{Slot: s.Name}); err != nil {
		return fmt.Errorf("%w; the old side's retirement is journaled in %s: `haroll recover` finishes it", err, a.cfg.StateDir)
	}
	if err := ret.retire(ctx, nil); err != nil {
		return err
	}
	return nil
}

// forgetPairCanary forgets slot's canary when it is a blue/green one: once
// a recovery has finished or undone one of its halves, the record no longer
// describes the host.
func (a *Agent) forgetPairCanary(slot string) error {
	all, err := a.canaries()
	if err != nil {
		return err
	}
	if c, ok := all[slot]; ok && c.Surge != nil {
		return a.setCanary(Canary{Slot: slot})
	}
	return nil
}
