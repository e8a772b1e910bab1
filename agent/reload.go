package agent

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/haroll/haroll/runtime"
)

// reloadWatch follows the HAProxy worker a replacement talks to.
type reloadWatch struct {
	info       runtime.Info
	current    oldWorker   // the worker info describes, as oldWorkers will hold it
	oldWorkers []oldWorker // workers replaced by a reload while this slot was out

	tmu   sync.Mutex
	track tracking // how old workers are followed (track)
}

// watchReload asks `show info` whether HAProxy was reloaded or restarted
// since the last look. A reload without a server-state-file reverts every
// runtime change, so the ones this replacement holds the server to are
// applied again (reapply). It reports whether a reload was seen, so a wait
// looks again before it decides anything.
func (r *replacement) watchReload(ctx context.Context) (bool, error) {
	t := r.track(ctx)
	// The guard and the waits both look: asking under hmu keeps an older
	// answer from being taken for a reload after a newer one was handled.
	r.hmu.Lock()
	defer r.hmu.Unlock()
	info, err := r.a.haproxy.Info(ctx)
	if err != nil {
		return false, err
	}
	w := &r.reload
	if w.info.Pid == 0 {
		w.info, w.current = info, r.identify(t, info.Pid)
		return false, nil
	}
	if !w.info.Reloaded(info) {
		return false, nil
	}
	// w.info moves to the new process only once everything is re-applied:
	// a failure here is seen as the same reload on the next look.
	if !slices.ContainsFunc(w.oldWorkers, func(o oldWorker) bool { return o.pid == w.info.Pid }) {
		w.oldWorkers = append(w.oldWorkers, w.current)
		r.log.Warn("haproxy was reloaded or restarted: re-applying this slot's runtime changes", "old_pid", w.info.Pid, "pid", info.Pid)
		if t.mode == trackOff {
			r.log.Warn("the old haproxy worker may still serve sessions of this server that haroll cannot see: "+t.why, "old_pid", w.info.Pid)
		}
	}
	if err := r.reapply(ctx); err != nil {
		return true, err
	}
	w.info, w.current = info, r.identify(t, info.Pid)
	return true, nil
}

// identify returns what tells the worker pid apart once it is an old one.
func (r *replacement) identify(t tracking, pid int) oldWorker {
	if t.mode == trackLocal {
		return r.a.procfs.worker(pid)
	}
	return oldWorker{pid: pid}
}

// reapply makes again the runtime changes this replacement holds the server
// to; it runs under hmu. Maintenance comes first, in one command: the new
// worker starts the server UP at its configured weight and address, which in
// stop-first may be the unproven new container's.
func (r *replacement) reapply(ctx context.Context) error {
	a, s := r.a, r.p.slot
	if r.e.Maint {
		if err := a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateMaint); err != nil {
			return fmt.Errorf("re-apply maintenance after a reload: %w", err)
		}
	}
	if r.e.Drained {
		var err error
		switch {
		case r.e.DrainMode != DrainState:
			err = a.haproxy.SetWeight(ctx, s.Backend, s.Server, 0)
		case !r.e.Maint: // `state drain` would take the server out of maintenance
			err = a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateDrain)
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
	if r.gating && !r.e.Maint {
		// A reload that loads a server-state file saved while the server
		// was in maintenance (a blue/green slot's idle side, before its
		// gate) has it there again: it leaves it into `health down`.
		adm, err := a.haproxy.Admin(ctx, s.Backend, s.Server)
		switch {
		case err != nil:
		case adm.State == runtime.StateMaint:
			err = a.haproxy.LeaveMaint(ctx, s.Backend, s.Server, r.gateState())
		default:
			err = a.haproxy.ForceHealthDown(ctx, s.Backend, s.Server)
		}
		if err != nil {
			return fmt.Errorf("re-apply health down after a reload: %w", err)
		}
	}
	if r.serving > 0 {
		// A blue/green slot's new side, given its weight: a reload that
		// loads the states saved before (the idle side in maintenance)
		// must not take it out again before they are saved anew.
		if err := a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateReady); err != nil {
			return fmt.Errorf("re-apply the new side's state after a reload: %w", err)
		}
		if err := a.haproxy.SetWeight(ctx, s.Backend, s.Server, r.serving); err != nil {
			return fmt.Errorf("re-apply the new side's weight after a reload: %w", err)
		}
	}
	return nil
}

// guard watches for HAProxy reloads and restarts in the background, every
// poll, for as long as the replacement (or its rollback) runs, and has what
// the server is held to re-applied as soon as one is seen, whatever the
// replacement is doing then (stopping, starting, booting a container,
// running a hook). The waits look too, so that they decide nothing on the
// new worker's first answer. The returned stop ends the guard and waits for
// it.
func (r *replacement) guard(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// The first look, before the replacement changes anything: a reload
	// between its first change and a later first look would be taken for the
	// worker it started with, and neither re-applied nor waited for. An
	// error leaves it to the next look.
	_, _ = r.watchReload(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(r.a.poll)
		defer t.Stop()
		var failing bool
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_, err := r.watchReload(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				// Logged once per spell: the waits report outages themselves.
				r.log.Warn("watching for haproxy reloads", "error", err)
				failing = true
			case err == nil:
				failing = false
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
