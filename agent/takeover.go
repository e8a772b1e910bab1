package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/haroll/haroll/docker"
)

// PhaseTakeover: a redeploy takes over a slot whose earlier replacement
// could not be rolled back (takeOver), before it replaces it.
const PhaseTakeover Phase = "takeover"

// takeover is what a redeploy needs to take a wedged slot over: the journal
// entry whose rollback failed, the container to clone the slot's
// configuration from, and, once prepareTakeover wrote it, the journal entry
// the replacement starts from.
type takeover struct {
	wedged   Entry
	template docker.Container
	entry    Entry
}

// recoverOrTakeOver finishes or undoes an earlier replacement, as every
// redeploy does first. When its rollback fails (the slot is wedged: the old
// container is gone, or no longer proves healthy) and the request includes
// that slot, the redeploy takes the slot over instead of refusing: it
// returns the wedged entry. Other slots are not replaced meanwhile: the
// journal holds one entry, the only record of the wedged slot's original
// weight and state and of its containers, and a replacement of another slot
// would overwrite it. The error then names the slot, what failed and the
// ways forward.
func (a *Agent) recoverOrTakeOver(ctx context.Context, slots []SlotConfig) (wedged *Entry, did string, err error) {
	did, err = a.recoverLocked(ctx)
	if err == nil {
		return nil, did, nil
	}
	if OnlyLeftovers(err) {
		a.log.Warn("redeploying anyway", "error", err)
		return nil, strings.TrimPrefix(did+"; "+err.Error(), "; "), nil
	}
	a.markJournalFailed(err)
	e, rerr := (Journal{dir: a.cfg.StateDir}).Read()
	if rerr != nil || e == nil {
		return nil, "", fmt.Errorf("recovering an earlier replacement: %w", err)
	}
	requested := slices.ContainsFunc(slots, func(s SlotConfig) bool { return s.Name == e.Slot })
	if requested && !e.Proven && errors.Is(err, ErrRollback) {
		a.log.Warn("the earlier replacement could not be rolled back: this redeploy takes the slot over", "slot", e.Slot, "error", err)
		return e, "", nil
	}
	return nil, "", wedgedError(*e, err, a.cfg.StateDir)
}

// wedgedError says which slot an earlier replacement left wedged, what
// failed, and the ways forward.
func wedgedError(e Entry, err error, stateDir string) error {
	if e.Proven {
		return fmt.Errorf("%w: slot %s: the new container (%s) passed the health gate but its traffic could not be given back: %w; run `haroll recover` again once HAProxy answers, or `haroll recover --abandon` and set the server's weight by hand (`haroll recover --status` shows what is there)",
			ErrWedged, e.Slot, e.Image, err)
	}
	return fmt.Errorf("%w: slot %s (a replacement by %s, cut off in phase %s) could not be rolled back: %w; every redeploy of other slots waits until it is settled, since the journal in %s holds its only record. Either redeploy a working image to it (`haroll redeploy --slot %s --image <a working image>`: it takes the slot over), or fix it by hand and run `haroll recover --abandon` (`haroll recover --status` shows what is there and what each would do)",
		ErrWedged, e.Slot, e.Image, e.Phase, err, stateDir, e.Slot)
}

// checkTakeover is checkSlot for the wedged slot: its server must exist and
// be checked, its backend must let maintenance move pinned clients, and a
// container must be left to clone the configuration from. Its server is in
// maintenance, and its own container may be gone: both are what the
// take-over mends. The plan gets the weight and state of the journal, those
// from before the failed replacement, and is always stop-first.
func (a *Agent) checkTakeover(ctx context.Context, s SlotConfig, cfg haproxyConfig, e Entry) (plan, error) {
	p := plan{slot: s}
	srv, _, err := a.checkServer(ctx, s, cfg)
	if err != nil {
		return p, err
	}
	tmpl, err := a.template(ctx, s, e)
	if err != nil {
		return p, err
	}
	p.old, p.weight, p.state, p.addr = tmpl, e.Weight, e.State, srv.Addr
	p.takeover = &takeover{wedged: e, template: tmpl}
	return p, nil
}

// template returns the container a take-over clones the slot's
// configuration from: the old container if it is still there, else the new
// one of the failed replacement.
func (a *Agent) template(ctx context.Context, s SlotConfig, e Entry) (docker.Container, error) {
	if c, err := a.docker.Inspect(ctx, e.OldID); err == nil {
		return c, nil
	} else if !errors.Is(err, docker.ErrContainerNotFound) {
		return docker.Container{}, err
	}
	if c, ok, err := a.journalNew(ctx, s, e); err != nil || ok {
		return c, err
	}
	return docker.Container{}, fmt.Errorf("%w: neither the old container %s nor a new one of the failed replacement exists, so there is nothing to clone the slot's configuration from: recreate container %s by hand (as it was: image, env, ports, mounts, networks), then run `haroll recover --abandon` and give the server its traffic back (`set server %s/%s state ready` on the HAProxy socket)",
		ErrNoTemplate, shortID(e.OldID), s.Container, s.Backend, s.Server)
}

// journalNew finds the new container of the replacement e: by its ID, or,
// when a crash came before the ID was journaled, under the slot's name or
// the `-haroll-next` one.
func (a *Agent) journalNew(ctx context.Context, s SlotConfig, e Entry) (docker.Container, bool, error) {
	refs := []string{s.Container, s.Container + nextSuffix}
	if e.NewID != "" {
		refs = []string{e.NewID}
	}
	for _, ref := range refs {
		c, err := a.docker.Inspect(ctx, ref)
		switch {
		case errors.Is(err, docker.ErrContainerNotFound):
		case err != nil:
			return docker.Container{}, false, err
		case c.ID != e.OldID:
			return c, true, nil
		}
	}
	return docker.Container{}, false, nil
}

// takeOver replaces a wedged slot: prepareTakeover settles what the failed
// rollback left, then a stop-first replacement runs with the template as
// its old container, from the create on (the server is already out of every
// selection), and gives the server the weight and state it had before the
// failed replacement. A failure of the preparation leaves the wedged entry
// in the journal; one of the replacement rolls back to the template as to
// any old container, and, when that fails too, leaves the slot wedged as
// before, with the template kept.
func (a *Agent) takeOver(ctx context.Context, p plan, image string, events func(Event), c *cleaner) replaceResult {
	if err := a.prepareTakeover(ctx, &p, image, events); err != nil {
		err = fmt.Errorf("taking over the slot: %w", err)
		return replaceResult{err: err, report: SlotReport{Slot: p.slot.Name, Result: ResultFailed, OldContainer: p.old.ID,
			OldImage: p.old.Image, Weight: p.weight, Err: err.Error(), Phases: map[Phase]time.Duration{}}}
	}
	return a.replace(ctx, p, image, events, c)
}

// prepareTakeover takes the wedged slot's server out of every selection
// (the journal says so first) and waits for it to be empty, removes the
// failed container that is not the template, gives the template the slot's
// container name, and then, in one journal write, turns the wedged entry
// into that of a stop-first replacement by image whose old container is the
// template, drained, in maintenance and stopped. Each step leaves a journal
// the next recovery can act on.
func (a *Agent) prepareTakeover(ctx context.Context, p *plan, image string, events func(Event)) error {
	t, s := p.takeover, p.slot
	w := t.wedged
	rw := a.newReplacement(plan{slot: s, old: docker.Container{ID: w.OldID, Image: w.OldImage}, weight: w.Weight, state: w.State, addr: w.Addr}, w.Image, events)
	rw.e = w
	return rw.step(PhaseTakeover, func() (string, error) {
		// Bounded as a rollback is: HAProxy not answering is waited out
		// for a while, not for ever.
		qctx, cancel := context.WithTimeout(ctx, a.cfg.Drain.Timeout+a.grace)
		defer cancel()
		if err := a.retry(qctx, rw.log, "take the server out of every selection", func() error { return rw.quiesce(qctx) }); err != nil {
			return "", err
		}
		// The template is looked for again: the recovery that just failed
		// may have changed what is there.
		tmpl, err := a.template(ctx, s, w)
		if err != nil {
			return "", err
		}
		if failed, ok, err := a.journalNew(ctx, s, w); err != nil {
			return "", err
		} else if ok && failed.ID != tmpl.ID {
			if err := ignoreGone(a.docker.Stop(ctx, failed.ID)); err != nil {
				return "", err
			}
			if err := a.docker.Remove(ctx, failed.ID); err != nil {
				return "", err
			}
			if err := rw.record(w.Phase, func(e *Entry) { e.NewID = "" }); err != nil {
				return "", err
			}
		}
		if tmpl.Name != s.Container {
			if err := a.docker.Rename(ctx, tmpl.ID, s.Container); err != nil {
				return "", err
			}
		}
		srv, err := a.haproxy.Server(ctx, s.Backend, s.Server)
		if err != nil {
			return "", err
		}
		p.old, p.addr = tmpl, srv.Addr
		e := a.newReplacement(*p, image, events).e
		// The server is in maintenance, the template is (as good as)
		// stopped and HAProxy may point anywhere: a rollback from here
		// quiesces, brings the template back and proves it.
		e.Drained, e.Maint, e.Stopped, e.Switched, e.Renamed = true, true, true, true, true
		e.Phase = PhaseCreate
		if err := (Journal{dir: a.cfg.StateDir}).Write(e); err != nil {
			return "", err
		}
		t.entry = e
		// Out of maintenance the server is at weight 0 (or in DRAIN) until
		// the new container is proven, as in any replacement.
		if e.DrainMode != DrainState {
			if err := a.haproxy.SetWeight(ctx, s.Backend, s.Server, 0); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("slot wedged by the replacement by %s: cloning container %s %s (%s)", w.Image, tmpl.Name, shortID(tmpl.ID), tmpl.Image), nil
	})
}

// runTakenOver is run's stop-first tail for a slot taken over: the server
// is already drained and in maintenance (prepareTakeover).
func (r *replacement) runTakenOver(ctx context.Context) error {
	if err := r.step(PhaseCreate, func() (string, error) { return r.create(ctx) }); err != nil {
		return err
	}
	return r.stopFirst(ctx)
}
