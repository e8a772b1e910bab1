package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// prevSuffix names the old container while the new one is being proven;
// nextSuffix the new one, stopped first, until the old one has stopped.
const (
	prevSuffix = "-haroll-prev"
	nextSuffix = "-haroll-next"
)

// replacement is one slot's replacement in progress: what has been done so
// far, so that a failure undoes exactly that.
type replacement struct {
	a      *Agent
	p      plan
	image  string
	log    *slog.Logger
	events func(Event)
	report SlotReport

	// e is what has been done (or is about to be): it is journaled before
	// each change, so a crash at any point can be finished or undone.
	e       Entry
	journal Journal

	mu sync.Mutex // report and events, for phases that overlap
	// cleaner removes the old container in the background once the slot is
	// done; nil means at once (recovery).
	cleaner *cleaner
	cut     bool // the drain timed out and its sessions were shut down
	revived bool // the rollback started the stopped old container again

	// hmu serialises what haroll holds HAProxy's server to (the entry's
	// Drained and Maint, target, gating) with its changes, the journal
	// writes and the re-apply after a reload (guard), which run from two
	// goroutines. Every write to e goes through record or hold.
	hmu    sync.Mutex
	reload reloadWatch // HAProxy reloads seen, and what to re-apply
	gating bool        // in the health gate: a reload needs `health down` again
	target string      // the new (or revived) container's address, once known

	// retiring is, once a blue/green slot's surge is done, the retirement
	// of its old side (finishSurge), which the caller runs.
	retiring *replacement
	// serving, once a blue/green slot's new side has its weight, is that
	// weight: what a reload must not take from it (reapply).
	serving int
}

// record journals the entry with change applied, in phase, and only once
// that is written holds the change as done: a replacement that cannot
// record what it is about to do must not do it, and must never act on (or
// report) a state the journal does not hold, such as proven. A fact that is
// already true whatever the journal says (a container created) is set on
// r.e before, under hold.
func (r *replacement) record(phase Phase, change func(e *Entry)) error {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	next := r.e
	if change != nil {
		change(&next)
	}
	next.Phase = phase
	if err := r.journal.Write(next); err != nil {
		return err
	}
	// The same change again rather than r.e = next: the fields it does not
	// change are read without hmu by the goroutine that owns them.
	if change != nil {
		change(&r.e)
	}
	r.e.Phase = phase
	return nil
}

// hold runs fn under hmu: a change of what haroll holds the server to and
// the command that makes it, with no re-apply in between.
func (r *replacement) hold(fn func() error) error {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	return fn()
}

type replaceResult struct {
	report SlotReport
	err    error
	// proven: the new container passed the gate, and runs in the slot
	// even when err is set (only its restore failed).
	proven bool
}

// replace runs one slot through drain, stop, start, boot, address, gate,
// restore and cleanup. A failure after draining rolls back to the old
// container; the slot's server is never left drained.
func (a *Agent) replace(ctx context.Context, p plan, image string, events func(Event), c *cleaner) replaceResult {
	r := a.newReplacement(p, image, events)
	r.cleaner = c
	run := r.run
	if p.takeover != nil { // prepared by takeOver: drained, in maintenance
		r.e, run = p.takeover.entry, r.runTakenOver
	}
	begin := time.Now()
	// From the first change to the last, an HAProxy reload or restart has
	// what haroll holds the server to re-applied at once, in every phase.
	stopGuard := r.guard(ctx)
	defer stopGuard()
	err := run(ctx)
	switch {
	case err != nil && r.e.Proven:
		// Only the restore failed: the new container passed the gate, so it
		// is finished forward by the next recovery, never rolled back.
		err = fmt.Errorf("%w; the new container passed the health gate: the journal in %s is kept, and `haroll recover` (or the agent's next start) gives it its traffic", err, a.cfg.StateDir)
		r.report.Err = err.Error()
		r.report.Result = ResultFailed
	case err != nil:
		r.report.Err = err.Error()
		r.report.Result = ResultRolledBack
		if rbErr := r.rollback(ctx, err); rbErr != nil {
			r.report.Result = ResultFailed
			err = fmt.Errorf("%w; %w", err, rbErr)
			r.report.Err = err.Error()
		}
	default:
		r.report.Result = ResultReplaced
		r.report.NewContainer = r.e.NewID
	}
	r.report.Total = time.Since(begin)
	return replaceResult{report: r.report, err: err, proven: r.e.Proven}
}

// step runs one phase, times it, and reports it.
func (r *replacement) step(phase Phase, fn func() (string, error)) error {
	return r.stepSince(phase, time.Now(), fn)
}

// stepSince is step for a phase that began at start. Two phases may run at
// once (start-first boots while the old container drains).
func (r *replacement) stepSince(phase Phase, start time.Time, fn func() (string, error)) error {
	detail, err := fn()
	d := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.report.Phases[phase] += d
	ev := Event{Slot: r.p.slot.Name, Phase: phase, Start: start, Duration: d, Detail: detail}
	ev.DrainTimedOut = phase == PhaseDrain && (r.cut || errors.Is(err, ErrDrainTimeout))
	if err != nil {
		ev.Err, ev.Cause = err.Error(), err
		r.log.Error("phase failed", "phase", phase, "duration", d, "error", err)
	} else {
		r.log.Info("phase done", "phase", phase, "duration", d, "detail", detail)
	}
	r.events(ev)
	return err
}

func (a *Agent) newReplacement(p plan, image string, events func(Event)) *replacement {
	return &replacement{
		a: a, p: p, image: image, events: events, journal: Journal{dir: a.cfg.StateDir, fault: a.journalFault},
		log: a.log.With("slot", p.slot.Name, "backend", p.slot.Backend, "server", p.slot.Server),
		report: SlotReport{
			Slot: p.slot.Name, OldContainer: p.old.ID, OldImage: p.old.Image,
			Weight: p.weight, Phases: map[Phase]time.Duration{},
		},
		e: Entry{Slot: p.slot.Name, Image: image, OldID: p.old.ID, OldImage: p.old.Image, Weight: p.weight,
			State: p.state, Addr: p.addr, DrainMode: a.cfg.Drain.Mode, Started: time.Now(),
			Final: p.final, Full: p.full, Canary: p.canary, StartFirst: p.startFirst},
	}
}

func (r *replacement) run(ctx context.Context) error {
	a := r.a
	if err := r.preDrain(ctx); err != nil {
		return err // nothing touched yet: the rollback has nothing to undo
	}
	begin := time.Now()
	if err := r.beginDrain(ctx); err != nil {
		return r.stepSince(PhaseDrain, begin, func() (string, error) { return "", err })
	}
	drainCtx, cancelDrain := context.WithCancel(ctx)
	var draining sync.WaitGroup
	// The drain never outlives run, even one cut short by a panic.
	defer func() { cancelDrain(); draining.Wait() }()
	drained := make(chan error, 1)
	draining.Add(1)
	go func() {
		defer draining.Done()
		drained <- r.stepSince(PhaseDrain, begin, func() (string, error) { return r.awaitDrain(drainCtx) })
	}()
	// While the old container drains, the new one is created and, started
	// first, started and booted too. health.timeout bounds the way from its
	// start to ready, then (from the end of the drain) the health gate.
	bootCtx, cancelBoot := context.WithTimeout(ctx, a.cfg.Health.Timeout)
	defer cancelBoot()
	var addr address
	err := r.step(PhaseCreate, func() (string, error) { return r.create(ctx) })
	if err == nil && r.p.startFirst {
		if err = r.step(PhaseStart, func() (string, error) { return "", a.docker.Start(ctx, r.e.NewID) }); err == nil {
			addr, err = r.boot(bootCtx)
		}
	}
	if err != nil {
		cancelDrain() // the slot fails anyway: no need to wait for the drain
	}
	if drainErr := <-drained; err == nil {
		err = drainErr
	}
	if err != nil {
		return err
	}
	if r.p.startFirst {
		gateCtx, cancel := context.WithTimeout(ctx, a.cfg.Health.Timeout)
		defer cancel()
		return r.prove(ctx, gateCtx, addr)
	}
	return r.stopFirst(ctx)
}

// stopFirst is the rest of a stop-first replacement once the old container
// is drained and the new one created: stop the old one, give the new one
// the slot's name and start it, boot, prove.
func (r *replacement) stopFirst(ctx context.Context) error {
	a := r.a
	if err := r.step(PhaseStop, func() (string, error) {
		// A stop that fails half-way must still be undone.
		if err := r.record(PhaseStop, func(e *Entry) { e.Stopped = true }); err != nil {
			return "", err
		}
		return "", a.docker.Stop(ctx, r.p.old.ID)
	}); err != nil {
		return err
	}
	healthCtx, cancel := context.WithTimeout(ctx, a.cfg.Health.Timeout)
	defer cancel()
	if err := r.step(PhaseStart, func() (string, error) { return r.swapNames(ctx) }); err != nil {
		return err
	}
	addr, err := r.boot(healthCtx)
	if err != nil {
		return err
	}
	return r.prove(ctx, healthCtx, addr)
}

// create makes the new container from the old one's configuration. Started
// first, it takes the slot's container name at once (the old container is
// renamed out of the way, running); stopped first, it is created as
// `<name>-haroll-next` and takes the name once the old one has stopped
// (swapNames): a fixed host port is only claimed at start.
func (r *replacement) create(ctx context.Context) (string, error) {
	a, s := r.a, r.p.slot
	name := s.Container + nextSuffix
	if r.p.startFirst {
		name = s.Container
	}
	if err := r.record(PhaseCreate, func(e *Entry) { e.Renamed = r.p.startFirst }); err != nil {
		return "", err
	}
	if r.p.startFirst {
		if err := r.renameOldAside(ctx); err != nil {
			return "", err
		}
	} else if err := r.removeStaleNext(ctx, name); err != nil {
		return "", err
	}
	id, err := a.docker.Clone(ctx, r.p.old.ID, r.image, name)
	if err != nil {
		return "", err
	}
	// It exists whether or not the journal can say so: a rollback removes it.
	_ = r.hold(func() error { r.e.NewID = id; return nil })
	return name + " " + shortID(id), r.record(PhaseCreate, nil)
}

// removeStaleNext removes a container left under the `-haroll-next` name
// by a replacement that a crash cut off while Docker was still creating it:
// the daemon finished the create after haroll had died, and after the
// recovery had looked for it. The name is haroll's own, derived from the
// slot's container.
func (r *replacement) removeStaleNext(ctx context.Context, name string) error {
	c, err := r.a.docker.Inspect(ctx, name)
	if errors.Is(err, docker.ErrContainerNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.ID == r.p.old.ID {
		return fmt.Errorf("container %s is the slot's own container under a haroll name: rename it to %s", name, r.p.slot.Container)
	}
	r.log.Warn("removing a container left by a replacement cut off by a crash", "container", name, "container_id", shortID(c.ID))
	return r.a.docker.Remove(ctx, c.ID)
}

// renameOldAside gives the old container the `-haroll-prev` name. An old
// container of an earlier replacement that could not be removed (one
// leftovers.json names) may still hold it: it is renamed out of the way,
// `-haroll-old-<id>`, and stays in leftovers.json for the next recovery.
// Any other container under that name is a conflict.
func (r *replacement) renameOldAside(ctx context.Context) error {
	a, prev := r.a, r.p.slot.Container+prevSuffix
	err := a.docker.Rename(ctx, r.p.old.ID, prev)
	if !errors.Is(err, docker.ErrNameConflict) {
		return err
	}
	holder, ierr := a.docker.Inspect(ctx, prev)
	if ierr != nil {
		return err
	}
	ls, lerr := readLeftovers(a.cfg.StateDir)
	if lerr != nil || !slices.ContainsFunc(ls, func(l Leftover) bool { return l.ID == holder.ID }) {
		return err
	}
	aside := fmt.Sprintf("%s-haroll-old-%s", r.p.slot.Container, shortID(holder.ID))
	r.log.Warn("an old container not yet removed holds the -haroll-prev name: renaming it", "container", shortID(holder.ID), "to", aside)
	if err := a.docker.Rename(ctx, holder.ID, aside); err != nil {
		return err
	}
	return a.docker.Rename(ctx, r.p.old.ID, prev)
}

// swapNames gives the stopped old container the `-haroll-prev` name and the
// new one the slot's, and starts the new one.
func (r *replacement) swapNames(ctx context.Context) (string, error) {
	a, s := r.a, r.p.slot
	if err := r.record(PhaseStart, func(e *Entry) { e.Renamed = true }); err != nil {
		return "", err
	}
	if err := r.renameOldAside(ctx); err != nil {
		return "", err
	}
	if err := a.docker.Rename(ctx, r.e.NewID, s.Container); err != nil {
		return "", err
	}
	return shortID(r.e.NewID), a.docker.Start(ctx, r.e.NewID)
}

// boot waits until the new container is ready, and returns its address.
func (r *replacement) boot(ctx context.Context) (address, error) {
	var addr address
	err := r.step(PhaseBoot, func() (string, error) {
		var err error
		addr, err = r.a.waitContainerReady(ctx, r.e.NewID, r.p.slot)
		return addr.String(), err
	})
	return addr, err
}

// prove points HAProxy at the new container when its address differs and
// runs the post_replace hook, both while the server is still in maintenance
// (no client, pinned or not, reaches the new container), then takes the
// server out of maintenance straight into a forced `health down`, passes the
// health gate within gateCtx, and finishes the replacement.
func (r *replacement) prove(ctx, gateCtx context.Context, addr address) error {
	a, s := r.a, r.p.slot
	_ = r.hold(func() error { r.target = addr.String(); return nil })
	if addr.String() != r.p.addr {
		if err := r.step(PhaseAddress, func() (string, error) {
			if err := r.record(PhaseAddress, func(e *Entry) { e.Switched = true }); err != nil {
				return "", err
			}
			return r.p.addr + " -> " + addr.String(), r.hold(func() error {
				return a.haproxy.SetAddr(ctx, s.Backend, s.Server, addr.IP, addr.Port)
			})
		}); err != nil {
			return err
		}
	}
	// Still in maintenance: a failing hook rolls back like a failed gate.
	if err := r.postReplace(ctx); err != nil {
		return err
	}
	if err := r.step(PhaseGate, func() (string, error) {
		if err := r.record(PhaseGate, nil); err != nil {
			return "", err
		}
		return r.freshCheck(gateCtx)
	}); err != nil {
		return err
	}
	// Proven: from here a crash is finished forward, never rolled back.
	if err := r.record(PhaseRestore, func(e *Entry) { e.Proven = true }); err != nil {
		return err
	}
	return r.finish(ctx)
}

// finish gives the proven new container its traffic and removes the old one.
// The restore is retried while HAProxy does not answer (for at most
// rollbackGrace): the new container is proven, so a restart of HAProxy at
// this point is waited out rather than rolled back.
func (r *replacement) finish(ctx context.Context) error {
	a := r.a
	if r.e.Pair != nil {
		return r.finishSurge(ctx)
	}
	if err := r.step(PhaseRestore, func() (detail string, err error) {
		// The canary record comes first: a crash after a reduced weight is
		// set must not forget the whole one.
		if err := r.recordCanary(); err != nil {
			return "", err
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.grace)
		defer cancel()
		err = a.retry(rctx, r.log, "restore weight/state", func() (err error) {
			detail, err = r.giveBack(rctx, r.finalWeight())
			return err
		})
		return detail, err
	}); err != nil {
		return err
	}
	// The new container serves; failing to remove the old one is not a
	// reason to roll back, only to tell the operator. Started first, the old
	// one still runs (HAProxy no longer sends it anything): it gets its own
	// stop signal and timeout rather than a kill. During a redeploy that
	// happens in the background, while the next slot is replaced.
	old := Leftover{Slot: r.p.slot.Name, ID: r.p.old.ID}
	if r.cleaner != nil {
		if err := r.cleaner.add(old); err == nil {
			return r.journal.Clear()
		}
	}
	if err := r.step(PhaseCleanup, func() (string, error) { return shortID(old.ID), a.removeLeftover(old) }); err != nil {
		// leftovers.json names it before the journal goes, so that the
		// next recovery removes it; else the journal stays, and the next
		// recovery finishes the slot (cleanup included) again.
		if lerr := a.keepLeftover(r.cleaner, old); lerr != nil {
			return fmt.Errorf("old container %s was not removed (%w) nor recorded for a later removal (%w): the journal in %s is kept", shortID(old.ID), err, lerr, a.cfg.StateDir)
		}
	}
	return r.journal.Clear()
}

// beginDrain takes the slot's unpinned traffic away: weight 0 (or state
// drain). Clients pinned to the server by a cookie or a stick table still
// reach it until awaitDrain puts it in maintenance.
func (r *replacement) beginDrain(ctx context.Context) error {
	a, s := r.a, r.p.slot
	if err := a.checkServing(ctx, s); err != nil {
		return err
	}
	if err := r.record(PhaseDrain, func(e *Entry) { e.Drained = true }); err != nil {
		return err
	}
	if _, err := r.watchReload(ctx); err != nil { // the worker the drain starts on
		return err
	}
	return r.hold(func() error {
		if a.cfg.Drain.Mode == DrainState {
			return a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateDrain)
		}
		return a.haproxy.SetWeight(ctx, s.Backend, s.Server, 0)
	})
}

// awaitDrain empties the drained server, within drain.timeout: it lets the
// pinned clients be served for drain.grace (less when the server is idle
// sooner), puts the server in maintenance, which takes it out of every
// selection, persistence and queue included, and waits until HAProxy shows it
// in maintenance with no session and no queued request. Then it applies
// drain.on_timeout.
func (r *replacement) awaitDrain(ctx context.Context) (string, error) {
	a, s := r.a, r.p.slot
	how := fmt.Sprintf("mode %s", a.cfg.Drain.Mode)
	if r.p.startFirst {
		how += ", start-first"
	}
	begin := time.Now()
	drainCtx, cancel := context.WithTimeout(ctx, a.cfg.Drain.Timeout)
	defer cancel()
	if g := a.cfg.Drain.Grace; g > 0 {
		graceCtx, cancel := context.WithTimeout(drainCtx, g)
		_, err := r.waitServer(graceCtx, runtime.ServerStat.Drained)
		cancel()
		if err != nil && ctx.Err() != nil {
			return "", err
		}
	}
	pinned := time.Since(begin)
	if err := a.retry(drainCtx, r.log, "put the server in maintenance", func() error { return r.enterMaint(drainCtx) }); err != nil {
		if transient(err) && drainCtx.Err() != nil {
			return "", fmt.Errorf("haproxy has not answered for %s: %w", time.Since(begin).Round(time.Millisecond), err)
		}
		return "", err
	}
	last, err := r.waitDrained(drainCtx)
	if err == nil {
		return fmt.Sprintf("scur 0, qcur 0 in MAINT (%s; MAINT after %s)", how, pinned.Round(time.Millisecond)), nil
	}
	if !errors.Is(err, ErrDrainTimeout) || a.cfg.Drain.OnTimeout != OnTimeoutShutdown {
		return "", err
	}
	r.log.Warn("drain timed out, shutting sessions down", "scur", last.Scur, "qcur", last.Qcur)
	r.cut = true
	if err := a.haproxy.ShutdownSessions(ctx, s.Backend, s.Server); err != nil {
		return "", err
	}
	cutCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := r.waitDrained(cutCtx); err != nil {
		return "", fmt.Errorf("after shutdown sessions: %w", err)
	}
	return fmt.Sprintf("timed out with scur %d, qcur %d: sessions shut down", last.Scur, last.Qcur), nil
}

// giveBack restores the server's state and weight and marks the drain
// undone, in one hold: a re-apply after a reload in between would drain the
// server again behind the restore.
func (r *replacement) giveBack(ctx context.Context, weight int) (detail string, err error) {
	err = r.hold(func() error {
		if detail, err = r.restore(ctx, weight); err == nil {
			r.e.Drained = false
		}
		return err
	})
	return detail, err
}

// restore gives the slot its original state back, and weight; the runtime
// client reads each one back. It runs under hmu (giveBack). A server still
// in maintenance is left there: the container behind it was not proven, and
// leaving maintenance is the gate's job.
func (r *replacement) restore(ctx context.Context, weight int) (string, error) {
	a, s := r.a, r.p.slot
	if r.e.Maint {
		// Nothing proven is behind it: it stays out of every selection.
		// The weight alone may come back, since in maintenance it hands
		// out nothing.
		if r.e.DrainMode != DrainState {
			_ = a.haproxy.SetWeight(ctx, s.Backend, s.Server, weight)
		}
		return "", fmt.Errorf("%s/%s is left in maintenance: the container behind it was not proven healthy", s.Backend, s.Server)
	}
	if r.e.DrainMode == DrainState { // as drained, even if the config changed since
		if err := a.haproxy.SetState(ctx, s.Backend, s.Server, r.p.state); err != nil {
			return "", err
		}
		if weight == r.p.weight { // the drain left the weight alone
			return fmt.Sprintf("state %s", r.p.state), nil
		}
	}
	if err := a.haproxy.SetWeight(ctx, s.Backend, s.Server, weight); err != nil {
		return "", err
	}
	switch {
	case r.e.Canary && weight == 0:
		return "weight 0 (canary of a server the operator drained: it stays at 0 and gets no traffic)", nil
	case r.e.Canary:
		return fmt.Sprintf("weight %d (canary, of %d)", weight, r.e.Full), nil
	}
	return fmt.Sprintf("weight %d", weight), nil
}

// finalWeight is the weight the proven new container gets.
func (r *replacement) finalWeight() int {
	if r.e.Final > 0 || r.e.Canary { // a canary's Final is set, 0 included
		return r.e.Final
	}
	return r.p.weight
}

// recordCanary records the slot's canary, or forgets the one the slot ran
// before this replacement.
func (r *replacement) recordCanary() error {
	c := Canary{Slot: r.p.slot.Name}
	if r.e.Canary {
		c = Canary{Slot: r.p.slot.Name, Image: r.image, FullWeight: r.e.Full, Weight: r.finalWeight(), Since: time.Now()}
	}
	return r.a.setCanary(c)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
