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

// rollback undoes what r did, in reverse: take the server out of every
// selection and wait for it to be empty before the new container it may
// point at is stopped, remove the new container, bring the old one back
// under its name, point HAProxy at it, prove it healthy with a fresh HAProxy
// check (leaving maintenance straight into `health down`), and give the
// original weight/state back. It goes on past errors so the server is never
// left drained without need; a server whose old container could not be
// proven stays in maintenance (and the journal says so), since nothing
// healthy is behind it. When the old container is gone, the new one is the
// only copy of the slot's configuration: it is stopped (after the server is
// quiesced) but kept, for a redeploy to take the slot over from, and the
// error wraps ErrOldGone. A failure is recorded in the journal (Failure),
// which Status and the metrics show as a wedged slot. Returns ErrRollback
// naming every step that failed.
func (r *replacement) rollback(parent context.Context, cause error) error {
	a := r.a
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), a.cfg.Health.Timeout+a.cfg.Drain.Timeout+a.grace)
	defer cancel()
	r.log.Warn("rolling back", "cause", cause)
	var errs []error
	// stuck: a step failed for a reason other than HAProxy or Docker not
	// answering in time, which the next recovery may not meet again.
	stuck := false
	// Each step is retried while HAProxy or Docker does not answer, within
	// the rollback's bound, and a step that fails does not stop the next.
	undo := func(what string, fn func() error) {
		if err := a.retry(ctx, r.log, what, fn); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			stuck = stuck || !transient(err) && ctx.Err() == nil
		}
	}
	_ = r.step(PhaseRollback, func() (string, error) {
		// HAProxy may point at the new container once the old one stopped
		// (same address) or the address was switched: it must select it
		// for nothing before it stops.
		exposed := r.e.Stopped || r.e.Switched
		// With the old container gone (removed by someone, or created with
		// --rm and deleted by its stop), the new one is the only copy of
		// the slot's configuration: it is stopped but kept, for a redeploy
		// to take the slot over from (takeOver), and the server stays out
		// of every selection.
		oldGone := r.e.NewID != "" && r.oldGone(ctx)
		if r.e.NewID != "" && (exposed || oldGone) && r.e.Drained {
			undo("take the server out of every selection", func() error { return r.quiesce(ctx) })
			if len(errs) > 0 {
				// The new container stays until HAProxy can be told: the
				// journal keeps the rest for the next recovery.
				return "", errors.Join(errs...)
			}
		}
		if r.e.NewID != "" {
			undo("stop new container", func() error { return ignoreGone(a.docker.Stop(ctx, r.e.NewID)) })
			if oldGone {
				errs = append(errs, r.keptError(ctx))
				stuck = true
			} else {
				undo("remove new container", func() error { return a.docker.Remove(ctx, r.e.NewID) })
			}
		}
		if r.e.Renamed && !oldGone {
			undo("rename old container back", func() error { return r.renameOldBack(ctx) })
		}
		if (exposed || r.inMaint()) && !oldGone {
			undo("bring old container back", func() error { return r.reviveOld(ctx) })
		}
		if r.e.Drained {
			undo("restore weight/state", func() error { _, err := r.giveBack(ctx, r.p.weight); return err })
		}
		if len(errs) > 0 {
			return "", errors.Join(errs...)
		}
		return fmt.Sprintf("old container %s (%s) serving", shortID(r.p.old.ID), r.p.old.Image), nil
	})
	if len(errs) > 0 {
		// The journal stays: the next start of haroll tries again, and
		// says the slot is wedged until then (Pending, Status).
		err := fmt.Errorf("%w: %w", ErrRollback, errors.Join(errs...))
		if stuck { // else pending: the next recovery retries what timed out
			r.markFailed(err)
		}
		return err
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
// it healthy to HAProxy, pointing the server back at it if its address moved
// (while the server is still in maintenance).
func (r *replacement) reviveOld(ctx context.Context) error {
	a, s := r.a, r.p.slot
	// A stopped old container is started again once: a retry (HAProxy or
	// Docker not answering later on) must not stop it again, since out of
	// maintenance HAProxy may be sending it requests. One never stopped
	// serves its sessions on.
	if r.e.Stopped && !r.revived {
		// A stop cut short (the agent cancelled or killed, docker.timeout)
		// may have reached Docker: the container then runs its shutdown
		// grace, healthy, and Start is a no-op on it, so it would pass the
		// gate and exit seconds later. Finish the stop first (its own stop
		// signal and timeout, then SIGKILL): the server is in maintenance
		// and drained, nothing reaches the container. One that is stopped
		// already costs an inspect.
		if err := a.docker.Stop(ctx, r.p.old.ID); err != nil {
			return fmt.Errorf("finish the stop of old container %s before starting it again: %w", shortID(r.p.old.ID), err)
		}
		if err := a.docker.Start(ctx, r.p.old.ID); err != nil {
			return err
		}
		r.revived = true
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
	if err := r.hold(func() error {
		r.target = addr.String()
		if addr.String() == srv.Addr {
			return nil
		}
		return a.haproxy.SetAddr(ctx, s.Backend, s.Server, addr.IP, addr.Port)
	}); err != nil {
		return err
	}
	_, err = r.freshCheck(healthCtx)
	return err
}
