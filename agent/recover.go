package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// ErrRecovered is the cause given to a rollback done on behalf of a
// replacement cut off by a crash.
var ErrRecovered = errors.New("replacement cut off by a crash")

// Recover finishes or rolls back a replacement that a crash (of the agent,
// of `haroll redeploy`, of the machine) cut off, as its journal says. A new
// container that passed the health gate is kept and given its traffic;
// anything earlier is rolled back to the old container. Either way the server
// gets its original weight and state back and no container is left over. It
// returns what it did ("" when there was nothing to do), and takes the host
// lock (ErrBusy when a replacement runs).
func (a *Agent) Recover(ctx context.Context) (string, error) {
	lock, err := AcquireLock(a.cfg.StateDir, fmt.Sprintf("pid %d: recovery since %s", os.Getpid(), time.Now().Format(time.RFC3339)))
	if err != nil {
		return "", err
	}
	defer lock.Release()
	begin := time.Now()
	did, err := a.recoverLocked(ctx)
	if err != nil {
		a.markJournalFailed(err)
	}
	a.observeRecovery(begin, did)
	return did, err
}

func (a *Agent) recoverLocked(ctx context.Context) (string, error) {
	did, err := a.recoverJournal(ctx)
	if err != nil {
		return did, err
	}
	// The halves of blue/green redeploys, each in its own journal.
	pairs, err := a.recoverPairs(ctx)
	if pairs != "" {
		did = strings.TrimPrefix(did+"; "+pairs, "; ")
	}
	if err != nil {
		return did, err
	}
	// Old containers of finished slots that a crash kept from removal.
	n, err := a.recoverLeftovers()
	if n > 0 {
		did = strings.TrimPrefix(did+fmt.Sprintf("; removed %d old container(s) of finished slots", n), "; ")
	}
	if err != nil {
		return did, leftoverError{err}
	}
	return did, nil
}

// leftoverError is a recovery's failure to remove the old containers of
// finished slots. They get no traffic and leftovers.json keeps them for the
// next recovery: a redeploy goes on (with a warning) rather than refuse.
type leftoverError struct{ err error }

func (e leftoverError) Error() string {
	return fmt.Sprintf("old containers of finished slots not removed (the next recovery tries again): %v", e.err)
}
func (e leftoverError) Unwrap() error { return e.err }

// OnlyLeftovers reports whether a recovery's err is only its failure to
// remove old containers of finished slots: nothing is pending, no slot is
// wedged, and a redeploy goes on.
func OnlyLeftovers(err error) bool {
	var le leftoverError
	return errors.As(err, &le)
}

// createSettle is how long after a journal write announcing a create the
// recovery waits before it looks for the new container by name.
const createSettle = 3 * time.Second

// settleCreate waits until createSettle has passed since the journal was
// written (at once when it is older), or ctx ends.
func (a *Agent) settleCreate(ctx context.Context, j Journal) {
	written, err := j.Written()
	if err != nil {
		return
	}
	wait := time.Until(written.Add(a.settle))
	if wait <= 0 {
		return
	}
	a.log.Info("the journal was cut off during a create: waiting for Docker to finish it", "wait", wait.Round(time.Millisecond))
	select {
	case <-ctx.Done():
	case <-time.After(wait):
	}
}

func (a *Agent) recoverJournal(ctx context.Context) (string, error) {
	j := Journal{dir: a.cfg.StateDir}
	e, err := j.Read()
	if err != nil || e == nil {
		return "", err
	}
	var slot *SlotConfig
	for i := range a.cfg.Slots {
		if a.cfg.Slots[i].Name == e.Slot {
			slot = &a.cfg.Slots[i]
		}
	}
	if slot == nil {
		return "", fmt.Errorf("the journal in %s names slot %q, which is no longer configured: put it back in the config to recover it", a.cfg.StateDir, e.Slot)
	}
	p := plan{slot: *slot, old: docker.Container{ID: e.OldID, Image: e.OldImage}, weight: e.Weight, state: e.State, addr: e.Addr}
	r := a.newReplacement(p, e.Image, a.observed(nil))
	r.e = *e
	stopGuard := r.guard(ctx) // reloads during the recovery, as during the replacement
	defer stopGuard()
	r.log.Warn("recovering a replacement cut off by a crash", "phase", e.Phase, "proven", e.Proven)
	if e.Proven {
		if err := r.reprove(ctx); err != nil {
			if transient(err) || ctx.Err() != nil {
				return "", fmt.Errorf("slot %s: checking the new container, proven before the crash, before it gets its traffic: %w (the journal is kept: the next recovery tries again)", e.Slot, err)
			}
			// It no longer passes: the slot goes back to the old container,
			// which is there unless the crash came after the background
			// cleanup removed it (then the rollback keeps the new one and
			// says the slot is wedged: ErrOldGone).
			r.log.Warn("the new container, proven before the crash, fails now: rolling back", "error", err)
			if rerr := r.record(PhaseGate, func(e *Entry) { e.Proven = false }); rerr != nil {
				return "", rerr
			}
			if rerr := r.rollback(ctx, err); rerr != nil {
				return "", rerr
			}
			return fmt.Sprintf("slot %s: rolled back to container %s: the new one, proven before the crash, failed after it: %v", e.Slot, shortID(e.OldID), err), nil
		}
		if err := r.finish(ctx); err != nil {
			return "", err
		}
		return fmt.Sprintf("slot %s: finished the replacement by %s (it had passed the health gate; checked again at %s)", e.Slot, e.Image, r.target), nil
	}
	// A crash between creating the new container and journaling its ID
	// leaves it under the slot's name, or the `-haroll-next` one: that is the
	// one to remove. A create still in flight when haroll died is finished
	// by the daemon on its own: give it createSettle to land.
	if r.e.NewID == "" && e.Phase == PhaseCreate {
		a.settleCreate(ctx, j)
	}
	for _, name := range []string{slot.Container, slot.Container + nextSuffix} {
		if c, err := a.docker.Inspect(ctx, name); err == nil && c.ID != e.OldID && r.e.NewID == "" {
			_ = r.hold(func() error { r.e.NewID = c.ID; return nil })
		}
	}
	if err := r.rollback(ctx, ErrRecovered); err != nil {
		return "", err
	}
	return fmt.Sprintf("slot %s: rolled back to container %s (cut off in phase %s)", e.Slot, shortID(e.OldID), e.Phase), nil
}

// reprove checks a new container that passed the gate before a crash
// before it gets its traffic: HAProxy restarted without a state file points
// the server at its configured address again (the old container's, or
// nothing), and a reboot may have given the container another address. The
// server is pointed at the container's address now, in maintenance and
// empty first when it pointed elsewhere, and the container must pass fresh
// HAProxy checks again.
func (r *replacement) reprove(ctx context.Context) error {
	a, s := r.a, r.p.slot
	healthCtx, cancel := context.WithTimeout(ctx, a.cfg.Health.Timeout)
	defer cancel()
	c, err := a.docker.Inspect(ctx, r.e.NewID)
	if err != nil {
		return err
	}
	if !c.Running { // a reboot without a restart policy
		if err := a.docker.Start(ctx, c.ID); err != nil {
			return err
		}
	}
	addr, err := a.waitContainerReady(healthCtx, r.e.NewID, s)
	if err != nil {
		return err
	}
	srv, err := a.haproxy.Server(ctx, s.Backend, s.Server)
	if err != nil {
		return err
	}
	if srv.Addr != addr.String() {
		r.log.Warn("haproxy does not point at the new container: pointing it there from maintenance", "haproxy_addr", srv.Addr, "container_addr", addr.String())
		if err := r.quiesce(ctx); err != nil {
			return err
		}
	}
	if err := r.hold(func() error {
		r.target = addr.String()
		if srv.Addr == addr.String() {
			return nil
		}
		return a.haproxy.SetAddr(ctx, s.Backend, s.Server, addr.IP, addr.Port)
	}); err != nil {
		return err
	}
	// A server that already serves the container (the crash came after the
	// restore, or HAProxy restarted at that address) is not forced down
	// when the backend's other servers could not take its traffic
	// (min_serving): the probe above proved the container answers there,
	// and HAProxy's own checks of it go on.
	if srv.Addr == addr.String() && srv.Serving() {
		if err := a.checkServing(ctx, s); err != nil {
			r.log.Warn("the server already serves the new container: no forced check, since the backend could not do without it", "reason", err)
			return nil
		}
	}
	// A reload that loaded a server-state file saved while the server was
	// in maintenance (a blue/green slot's new side, proven before the
	// crash) has it there again: the gate takes it out into `health down`.
	if adm, err := a.haproxy.Admin(ctx, s.Backend, s.Server); err != nil {
		return err
	} else if adm.State == runtime.StateMaint && !r.inMaint() {
		if err := r.record(r.e.Phase, func(e *Entry) { e.Maint = true }); err != nil {
			return err
		}
	}
	_, err = r.freshCheck(healthCtx)
	return err
}
