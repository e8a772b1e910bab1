package agent

import (
	"context"
	"errors"

	"github.com/haroll/haroll/runtime"
)

// enterMaint puts the server in maintenance: HAProxy then selects it for no
// request, neither by balancing nor by a persistence cookie or stick-table
// entry (unless `option persist` or `force-persist`, which preflight
// refuses), and hands its queued requests to other servers. Sessions in
// flight go on. The journal says so first.
func (r *replacement) enterMaint(ctx context.Context) error {
	a, s := r.a, r.p.slot
	return r.hold(func() error {
		next := r.e
		next.Maint = true
		if err := r.journal.Write(next); err != nil {
			return err
		}
		r.e.Maint = true
		return a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateMaint)
	})
}

// leaveMaint takes the server out of maintenance straight into a forced
// `health down` (one command line), into the state the drain left it in:
// DRAIN in drain mode, else ready at weight 0. From there only fresh checks
// bring it UP. The journal forgets the maintenance only once it is left, so
// that a crash in between is undone as if it were still on.
func (r *replacement) leaveMaint(ctx context.Context) error {
	a, s := r.a, r.p.slot
	to := r.gateState()
	return r.hold(func() error {
		if err := a.haproxy.LeaveMaint(ctx, s.Backend, s.Server, to); err != nil {
			return err
		}
		r.e.Maint, r.gating = false, true
		return r.journal.Write(r.e)
	})
}

// quiesce takes the server out of every selection (maintenance) and waits,
// within drain.timeout, until it has no session and no queued request, before
// a container it may point at is stopped. Sessions still open then are shut
// down: they are on a container that never passed the gate.
func (r *replacement) quiesce(ctx context.Context) error {
	a, s := r.a, r.p.slot
	if err := r.enterMaint(ctx); err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, a.cfg.Drain.Timeout)
	defer cancel()
	_, err := r.waitDrained(waitCtx)
	if !errors.Is(err, ErrDrainTimeout) {
		return err
	}
	r.log.Warn("sessions still open on the new container at drain.timeout: shutting them down", "error", err)
	if err := a.haproxy.ShutdownSessions(ctx, s.Backend, s.Server); err != nil {
		return err
	}
	return nil
}

// gateState is the state a server leaves maintenance into for its gate: the
// one the drain left it in, DRAIN in drain mode, else ready at weight 0.
func (r *replacement) gateState() runtime.State {
	if r.e.DrainMode == DrainState || r.p.state == runtime.StateDrain {
		return runtime.StateDrain
	}
	return runtime.StateReady
}
