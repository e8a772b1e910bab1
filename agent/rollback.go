package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/haroll/haroll/docker"
)

// rollbackGrace is added to health.timeout to bound a rollback, which runs
// even when the caller's context is cancelled, and bounds the final restore.
const rollbackGrace = 60 * time.Second

// rollback undoes what r did, in reverse: remove the new container, bring
// the old one back under its name, point HAProxy at it, prove it healthy with
// a fresh HAProxy check, and give the original weight/state back. It goes on
// past errors so the server is never left drained; a DOWN server takes no
// traffic whatever its weight, so restoring the weight of an old container
// that did not prove healthy hands it nothing. Returns ErrRollback naming
// every step that failed.
func (r *replacement) rollback(parent context.Context, cause error) error {
	a := r.a
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), a.cfg.Health.Timeout+a.grace)
	defer cancel()
	r.log.Warn("rolling back", "cause", cause)
	var errs []error
	// Each step is retried while HAProxy or Docker does not answer, within
	// the rollback's bound, and a step that fails does not stop the next.
	undo := func(what string, fn func() error) {
		if err := a.retry(ctx, r.log, what, fn); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	_ = r.step(PhaseRollback, func() (string, error) {
		if r.e.NewID != "" {
			undo("stop new container", func() error { return ignoreGone(a.docker.Stop(ctx, r.e.NewID)) })
			undo("remove new container", func() error { return a.docker.Remove(ctx, r.e.NewID) })
		}
		if r.e.Renamed {
			undo("rename old container back", func() error { return r.renameOldBack(ctx) })
		}
		if r.e.Stopped || r.e.Switched {
			undo("bring old container back", func() error { return r.reviveOld(ctx) })
		}
		if r.e.Drained {
			undo("restore weight/state", func() error { _, err := r.restore(ctx, r.p.weight); return err })
		}
		if len(errs) > 0 {
			return "", errors.Join(errs...)
		}
		return "old container " + shortID(r.p.old.ID) + " serving", nil
	})
	if len(errs) > 0 {
		// The journal stays: the next start of haroll tries again.
		return fmt.Errorf("%w: %w", ErrRollback, errors.Join(errs...))
	}
	return r.journal.Clear()
}

// renameOldBack gives the old container its name again, unless it has it
// (a crash may have come before the rename).
func (r *replacement) renameOldBack(ctx context.Context) error {
	old, err := r.a.docker.Inspect(ctx, r.p.old.ID)
	if err != nil {
		return err
	}
	if old.Name == r.p.slot.Container {
		return nil
	}
	return r.a.docker.Rename(ctx, r.p.old.ID, r.p.slot.Container)
}

// ignoreGone treats a container that no longer exists as stopped.
func ignoreGone(err error) error {
	if errors.Is(err, docker.ErrContainerNotFound) {
		return nil
	}
	return err
}

// reviveOld starts the old container again (if it was stopped) and proves
// it healthy to HAProxy, pointing the server back at it if its address moved.
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
	// Ask HAProxy where it points rather than trust what we did: a crash
	// may have come on either side of a `set server addr`.
	srv, err := a.haproxy.Server(ctx, s.Backend, s.Server)
	if err != nil {
		return err
	}
	r.target = addr.String()
	if addr.String() != srv.Addr {
		if err := a.haproxy.SetAddr(ctx, s.Backend, s.Server, addr.IP, addr.Port); err != nil {
			return err
		}
	}
	_, err = r.freshCheck(healthCtx)
	return err
}
