package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"syscall"

	"github.com/haroll/haroll/runtime"
)

// reloadWatch follows the HAProxy worker a replacement talks to.
type reloadWatch struct {
	info       runtime.Info
	oldWorkers []int // workers replaced by a reload while this slot was out
	count      int
}

// watchReload asks `show info` whether HAProxy was reloaded or restarted
// since the last look. A reload reverts every runtime change, so the ones
// this replacement owns are applied again: the drain (weight 0 or state
// drain), the new address, and `health down` during the gate (the new worker
// starts the server UP with no check run). It reports whether a reload was
// seen, so a wait looks again before it decides anything.
func (r *replacement) watchReload(ctx context.Context) (bool, error) {
	info, err := r.a.haproxy.Info(ctx)
	if err != nil {
		return false, err
	}
	w := &r.reload
	if w.info.Pid == 0 {
		w.info = info
		return false, nil
	}
	if !w.info.Reloaded(info) {
		return false, nil
	}
	// w.info moves to the new process only once everything is re-applied:
	// a failure here is seen as the same reload on the next look.
	if !slices.Contains(w.oldWorkers, w.info.Pid) {
		w.oldWorkers = append(w.oldWorkers, w.info.Pid)
		r.log.Warn("haproxy was reloaded or restarted: re-applying this slot's runtime changes", "old_pid", w.info.Pid, "pid", info.Pid)
	}
	if err := r.reapply(ctx); err != nil {
		return true, err
	}
	w.info = info
	w.count++
	return true, nil
}

// reapply makes again the runtime changes this replacement owns.
func (r *replacement) reapply(ctx context.Context) error {
	a, s := r.a, r.p.slot
	var err error
	if r.e.Drained {
		if r.e.DrainMode == DrainState {
			err = a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateDrain)
		} else {
			err = a.haproxy.SetWeight(ctx, s.Backend, s.Server, 0)
		}
		if err != nil {
			return fmt.Errorf("re-apply the drain after a reload: %w", err)
		}
	}
	if r.target != "" {
		host, port, _ := net.SplitHostPort(r.target)
		p, _ := strconv.Atoi(port)
		if err := a.haproxy.SetAddr(ctx, s.Backend, s.Server, host, p); err != nil {
			return fmt.Errorf("re-apply the address after a reload: %w", err)
		}
	}
	if r.gating {
		if err := a.haproxy.ForceHealthDown(ctx, s.Backend, s.Server); err != nil {
			return fmt.Errorf("re-apply health down after a reload: %w", err)
		}
	}
	return nil
}

// oldWorkersGone reports whether every HAProxy worker replaced by a reload
// during this replacement has exited. An old worker keeps serving the
// sessions it had, which the new worker's counters do not show; it exits when
// they end. This needs the agent on the HAProxy host (same pid namespace).
func (r *replacement) oldWorkersGone() bool {
	for _, pid := range r.reload.oldWorkers {
		if err := syscall.Kill(pid, 0); err == nil || !errors.Is(err, syscall.ESRCH) {
			return false
		}
	}
	return true
}
