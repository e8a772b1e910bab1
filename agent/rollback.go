package agent

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// rollbackGrace is added to health.timeout to bound a rollback, which runs
// even when the caller's context is cancelled.
const rollbackGrace = 60 * time.Second

// rollback undoes what r did, in reverse: remove the new container, bring
// the old one back under its name, point HAProxy at it, prove it healthy with
// a fresh HAProxy check, and give the original weight/state back. It goes on
// past errors so the server is never left drained; a DOWN server takes no
// traffic whatever its weight, so restoring the weight of an old container
// that did not prove healthy hands it nothing. Returns ErrRollback naming
// every step that failed.
func (r *replacement) rollback(parent context.Context, cause error) error {
	a, s := r.a, r.p.slot
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), a.cfg.Health.Timeout+rollbackGrace)
	defer cancel()
	r.log.Warn("rolling back", "cause", cause)
	var errs []error
	keep := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	_ = r.step(PhaseRollback, func() (string, error) {
		if r.newID != "" {
			keep("stop new container", a.docker.Stop(ctx, r.newID))
			keep("remove new container", a.docker.Remove(ctx, r.newID))
		}
		if r.renamed {
			keep("rename old container back", a.docker.Rename(ctx, r.p.old.ID, s.Container))
		}
		if r.stopped {
			keep("bring old container back", r.reviveOld(ctx))
		}
		if r.drained {
			_, err := r.restore(ctx)
			keep("restore weight/state", err)
		}
		if len(errs) > 0 {
			return "", errors.Join(errs...)
		}
		return "old container " + shortID(r.p.old.ID) + " serving", nil
	})
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrRollback, errors.Join(errs...))
	}
	return nil
}

// reviveOld starts the old container again and proves it healthy to HAProxy,
// pointing the server back at it if its address moved.
func (r *replacement) reviveOld(ctx context.Context) error {
	a, s := r.a, r.p.slot
	if err := a.docker.Start(ctx, r.p.old.ID); err != nil {
		return err
	}
	healthCtx, cancel := context.WithTimeout(ctx, a.cfg.Health.Timeout)
	defer cancel()
	addr, err := a.waitContainerReady(healthCtx, r.p.old.ID, s)
	if err != nil {
		return err
	}
	current := r.p.addr
	if r.movedTo != "" {
		current = r.movedTo
	}
	if addr.String() != current {
		if err := a.haproxy.SetAddr(ctx, s.Backend, s.Server, addr.IP, addr.Port); err != nil {
			return err
		}
	}
	_, err = a.freshCheck(healthCtx, s)
	return err
}
