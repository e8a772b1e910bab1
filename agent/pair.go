package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// A blue/green slot (SlotConfig.Alt) has two servers in its backend: the
// live one, whose container serves, and the idle one, in maintenance. A
// redeploy is a surge and a retirement. The surge brings the new container
// up behind the idle server while the live one serves on at full weight:
// create and start it (publishing the idle side's port), boot, point the
// idle server at it, post_replace, the health gate (out of maintenance into
// `health down`, at weight 0), then the slot's weight: the backend's
// capacity is whole again before anything is taken away. The retirement then
// drains the old side as every drain does (persistence-safe: weight 0 for
// drain.grace, maintenance, empty), gives its server back its weight inside
// maintenance (it is the idle side now) and removes the old container. A
// failed surge only undoes the new side: the live one was never touched.
// Each half has its own journal (pairJournal), so that several pairs may be
// under way at once (max_surge) and a crash at any step is finished or
// undone by the next recovery (recoverPairs).

// Journal kinds of a blue/green slot.
const (
	surgeJournal  = "surge"
	retireJournal = "retire"
)

// pairPlan is what preflight found out about a blue/green slot.
type pairPlan struct {
	live, idle string
	// idleAddr and idleWeight are how HAProxy has the idle server now.
	idleAddr   string
	idleWeight int
	// move is the host port change of the new container (fixed ports), nil
	// when its address is not fixed (then the idle server is pointed at it).
	move *docker.HostPortMove
	// stateFile is where the servers' states are saved for reloads.
	stateFile string
}

// pairJournal is the journal of one half (surgeJournal or retireJournal) of
// a blue/green slot's redeploy.
func (a *Agent) pairJournal(kind, slot string) Journal {
	return Journal{dir: a.cfg.StateDir, fault: a.journalFault, name: kind + "-" + url.PathEscape(slot) + ".json"}
}

// checkPair is checkSlot for a blue/green slot: both servers are in the
// backend (haproxy.cfg and the runtime API), checked, exactly one of them
// is out of maintenance (the live side), HAProxy loads the servers' states
// from a file on a reload, and the container can run beside its copy, the
// copy publishing the idle side's port.
func (a *Agent) checkPair(ctx context.Context, s SlotConfig, cfg haproxyConfig) (plan, error) {
	p := plan{slot: s}
	pc, err := cfg.pair(s.Backend)
	if err != nil {
		return p, fmt.Errorf("blue/green slot: haproxy.config: %w", err)
	}
	for _, name := range []string{s.Server, s.Alt.Server} {
		if _, ok := pc.Disabled[name]; !ok {
			return p, fmt.Errorf("blue/green slot: backend %s in haproxy.config has no server %s: declare both servers of the pair (the idle one `disabled`) so that a reload keeps them", s.Backend, name)
		}
	}
	if pc.Disabled[s.Server] == pc.Disabled[s.Alt.Server] {
		return p, fmt.Errorf("blue/green slot: haproxy.config must declare exactly one of %s/%s and %s/%s `disabled` (the one without a container when HAProxy first starts): else, started without its state file, HAProxy would send traffic to both or to neither", s.Backend, s.Server, s.Backend, s.Alt.Server)
	}
	if s.Alt.Port == 0 {
		// The new container gets a new address, which the idle server is
		// pointed at: a reload must keep it.
		for _, name := range []string{s.Server, s.Alt.Server} {
			if !pc.AddrKept[name] {
				return p, fmt.Errorf("blue/green slot without fixed ports (alt.port 0): the idle server is pointed at each new container with `set server addr`, and a reload would not keep that address (%s): write the server with a host name HAProxy resolves (e.g. an /etc/hosts entry) and no init-addr, or an init-addr starting with `last`; or publish fixed ports and set alt.port", pc.AddrWhy[name])
			}
		}
	}
	if pc.StateFile == "" {
		return p, fmt.Errorf("blue/green slot: HAProxy loads no server-state file for backend %s (%s): a reload would put both servers back to their haproxy.cfg states, so once the new side serves from the server declared `disabled`, a reload would take that server out and send its traffic to the other one, whose container is gone: add `server-state-file /var/lib/haproxy/server-state` to the global section and `load-server-state-from-file global` to the backend or its defaults (haroll writes the file after each change)", s.Backend, pc.Why)
	}
	type side struct {
		srv runtime.ServerStat
		adm runtime.Admin
	}
	sides := map[string]side{}
	for _, name := range []string{s.Server, s.Alt.Server} {
		one := s
		one.Server = name
		srv, adm, err := a.checkServer(ctx, one, cfg)
		if err != nil {
			return p, err
		}
		sides[name] = side{srv, adm}
	}
	liveA, liveB := sides[s.Server].adm.State != runtime.StateMaint, sides[s.Alt.Server].adm.State != runtime.StateMaint
	if liveA == liveB {
		what := "both are in maintenance: put the one whose container runs out of it (`set server %s/%s state ready`)"
		if liveA {
			what = "neither is in maintenance: put the one without a container in it (`set server %s/%s state maint`)"
		}
		return p, fmt.Errorf("blue/green slot: exactly one of %s/%s and %s/%s must be live, the other in maintenance; "+what,
			s.Backend, s.Server, s.Backend, s.Alt.Server, s.Backend, s.Alt.Server)
	}
	pp := &pairPlan{live: s.Server, idle: s.Alt.Server, stateFile: pc.StateFile}
	if liveB {
		pp.live, pp.idle = s.Alt.Server, s.Server
	}
	live, idle := sides[pp.live], sides[pp.idle]
	pp.idleAddr, pp.idleWeight = idle.srv.Addr, idle.srv.Weight
	old, err := a.docker.Inspect(ctx, s.Container)
	if err != nil {
		return p, err
	}
	p.old, p.weight, p.state, p.addr = old, live.srv.Weight, live.adm.State, live.srv.Addr
	// Fixed host ports are what the pair is for: the copy moves to the idle
	// side's. Anything else that keeps two containers from running side by
	// side rules the pair out.
	beside := old
	beside.FixedHostPorts = nil
	if ok, why := beside.CanRunBeside(); !ok {
		return p, fmt.Errorf("blue/green slot: container %s cannot run beside its replacement: %s", s.Container, why)
	}
	if !old.Running {
		return p, fmt.Errorf("blue/green slot: container %s is not running, so it cannot serve while its replacement comes up: start it, or redeploy with the slot's alt removed", s.Container)
	}
	at, err := containerAddress(old, s)
	if err != nil {
		return p, err
	}
	switch {
	case s.Alt.Port > 0:
		livePort, idlePort := addrPort(live.srv.Addr), addrPort(idle.srv.Addr)
		if pp.idle == s.Alt.Server && idlePort != s.Alt.Port {
			return p, fmt.Errorf("blue/green slot: alt.port is %d but HAProxy has %s/%s at %s: make them agree", s.Alt.Port, s.Backend, s.Alt.Server, idle.srv.Addr)
		}
		if at.Port != livePort {
			return p, fmt.Errorf("blue/green slot: container %s publishes %s but the live server %s/%s is at %s: the container must publish the live side's port", s.Container, at, s.Backend, pp.live, live.srv.Addr)
		}
		pp.move = &docker.HostPortMove{From: livePort, To: idlePort}
	case len(old.FixedHostPorts) > 0:
		return p, fmt.Errorf("blue/green slot: container %s publishes fixed host ports (%v): set the slot's alt.port to the port of %s/%s, the one its copy will publish", s.Container, old.FixedHostPorts, s.Backend, s.Alt.Server)
	}
	p.startFirst, p.pair = true, pp
	return p, nil
}

// addrPort is the port of host:port, 0 when there is none.
func addrPort(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// newSurge is the replacement that brings the new container up behind the
// idle server: the idle server is the one it holds (weight 0, in
// maintenance until the gate) and the live server's weight is what it gives.
func (a *Agent) newSurge(p plan, image string, events func(Event)) *replacement {
	pp := p.pair
	idle := p
	idle.slot.Server, idle.addr, idle.state = pp.idle, pp.idleAddr, runtime.StateReady
	r := a.newReplacement(idle, image, events)
	r.journal = a.pairJournal(surgeJournal, p.slot.Name)
	// The idle server is held at weight 0, whatever drain.mode says: it
	// must get no traffic until the gate is passed, and the weight is
	// what the surge gives.
	r.e.DrainMode, r.e.StartFirst = DrainWeight, true
	r.e.Pair = &PairEntry{Live: pp.live, Idle: pp.idle, IdleWeight: pp.idleWeight, StateFile: pp.stateFile}
	return r
}

// newRetirement is the replacement that drains the old side of a pair whose
// surge s finished, and removes the old container.
func (a *Agent) newRetirement(s *replacement, live string) *replacement {
	p := s.p
	p.slot.Server, p.addr, p.state = live, "", runtime.StateReady
	r := a.newReplacement(p, s.image, s.events)
	r.journal = a.pairJournal(retireJournal, p.slot.Name)
	r.e.NewID, r.e.Proven, r.e.Renamed, r.e.StartFirst = s.e.NewID, true, true, true
	pe := *s.e.Pair
	r.e.Pair = &pe
	return r
}

// replacePair runs the surge of a blue/green slot and returns, when it
// succeeded, the retirement of the old side, which the caller runs (in the
// background, while the next slot surges). A surge that fails before the
// gate is passed is undone (rollbackSurge); one whose only failure is
// giving the weight is kept for the next recovery to finish.
func (a *Agent) replacePair(ctx context.Context, p plan, image string, events func(Event)) (replaceResult, *replacement) {
	r := a.newSurge(p, image, events)
	begin := time.Now()
	stopGuard := r.guard(ctx) // through the rollback too
	defer stopGuard()
	err := r.surge(ctx)
	switch {
	case err != nil && r.e.Proven:
		err = fmt.Errorf("%w; the new container passed the health gate: the journal in %s is kept, and `haroll recover` (or the agent's next start) gives it its traffic", err, a.cfg.StateDir)
		r.report.Err, r.report.Result = err.Error(), ResultFailed
	case err != nil:
		r.report.Err, r.report.Result = err.Error(), ResultRolledBack
		if rbErr := r.rollbackSurge(ctx, err); rbErr != nil {
			r.report.Result = ResultFailed
			err = fmt.Errorf("%w; %w", err, rbErr)
			r.report.Err = err.Error()
		}
	default:
		r.report.Result, r.report.NewContainer = ResultReplaced, r.e.NewID
	}
	r.report.Total = time.Since(begin)
	return replaceResult{report: r.report, err: err, proven: r.e.Proven}, r.retiring
}

// surge brings the new container up behind the idle server and gives it the
// slot's weight; then (finishSurge) hands the old side to its retirement.
func (r *replacement) surge(ctx context.Context) error {
	a, s := r.a, r.p.slot
	if err := r.preDrain(ctx); err != nil {
		return err // nothing touched yet
	}
	// The idle server is in maintenance already; weight 0 too before the
	// gate takes it out, so that it gets no traffic until the surge gives it.
	if err := r.record(PhaseCreate, func(e *Entry) { e.Drained, e.Maint = true, true }); err != nil {
		return err
	}
	if err := r.hold(func() error {
		if err := a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateMaint); err != nil {
			return err
		}
		return a.haproxy.SetWeight(ctx, s.Backend, s.Server, 0)
	}); err != nil {
		return err
	}
	bootCtx, cancelBoot := context.WithTimeout(ctx, a.cfg.Health.Timeout)
	defer cancelBoot()
	if err := r.step(PhaseCreate, func() (string, error) { return r.createPair(ctx) }); err != nil {
		return err
	}
	if err := r.step(PhaseStart, func() (string, error) { return "", a.docker.Start(ctx, r.e.NewID) }); err != nil {
		return err
	}
	addr, err := r.boot(bootCtx)
	if err != nil {
		return err
	}
	gateCtx, cancelGate := context.WithTimeout(ctx, a.cfg.Health.Timeout)
	defer cancelGate()
	return r.prove(ctx, gateCtx, addr) // then finish: finishSurge
}

// createPair renames the old container aside, running, and clones it under
// the slot's container name, publishing the idle side's port.
func (r *replacement) createPair(ctx context.Context) (string, error) {
	a, s := r.a, r.p.slot
	if err := r.record(PhaseCreate, func(e *Entry) { e.Renamed = true }); err != nil {
		return "", err
	}
	if err := r.renameOldAside(ctx); err != nil {
		return "", err
	}
	var moves []docker.HostPortMove
	detail := ""
	if m := r.p.pair.move; m != nil {
		moves = append(moves, *m)
		detail = fmt.Sprintf(", host port %d (the old one keeps %d)", m.To, m.From)
	}
	id, err := a.docker.Clone(ctx, r.p.old.ID, r.image, s.Container, moves...)
	if err != nil {
		return "", err
	}
	_ = r.hold(func() error { r.e.NewID = id; return nil })
	return s.Container + " " + shortID(id) + " behind " + s.Server + detail, r.record(PhaseCreate, nil)
}

// finishSurge gives the proven new side the slot's weight, saves the
// servers' states, and journals the old side's retirement before it forgets
// the surge: from then on the retirement's journal covers the slot.
func (r *replacement) finishSurge(ctx context.Context) error {
	if r.e.Canary {
		return r.finishCanarySurge(ctx)
	}
	a, pe := r.a, r.e.Pair
	if err := r.step(PhaseRestore, func() (detail string, err error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.grace)
		defer cancel()
		// Held from before the command: a reload in between gets it too.
		_ = r.hold(func() error { r.serving = r.finalWeight(); return nil })
		err = a.retry(rctx, r.log, "give the new side its weight", func() (err error) {
			detail, err = r.giveBack(rctx, r.finalWeight())
			return err
		})
		return detail + " on " + pe.Idle + " beside " + pe.Live, err
	}); err != nil {
		return err
	}
	// Both sides serve: a reload must keep the new one live.
	if err := r.saveState(ctx); err != nil {
		return err
	}
	ret := a.newRetirement(r, pe.Live)
	if err := ret.record(PhaseDrain, nil); err != nil {
		return err
	}
	r.retiring = ret
	return r.journal.Clear()
}

// retire drains the old side (the server that was live) persistence-safe,
// leaves it in maintenance with its weight back, as the idle side, saves the
// servers' states and removes the old container. A drain that does not end
// within drain.timeout leaves the server in maintenance and the old
// container running, with drain.on_timeout shutdown after cutting the
// sessions: with fail, the journal stays for the next recovery to finish.
//
// c, when not nil, is the redeploy's cleaner, whose lock the record of an old
// container that could not be removed takes (retirements run at once).
func (r *replacement) retire(ctx context.Context, c *cleaner) error {
	a, s := r.a, r.p.slot
	stopGuard := r.guard(ctx)
	defer stopGuard()
	begin := time.Now()
	if err := r.record(PhaseDrain, func(e *Entry) { e.Drained = true }); err != nil {
		return err
	}
	if err := r.stepSince(PhaseDrain, begin, func() (string, error) {
		if err := r.hold(func() error {
			switch {
			case r.e.DrainMode != DrainState:
				return a.haproxy.SetWeight(ctx, s.Backend, s.Server, 0)
			case !r.e.Maint: // a recovery may find it in maintenance already
				return a.haproxy.SetState(ctx, s.Backend, s.Server, runtime.StateDrain)
			}
			return nil
		}); err != nil {
			return "", err
		}
		detail, err := r.awaitDrain(ctx)
		return detail + " (old side " + s.Server + ")", err
	}); err != nil {
		if r.inMaint() {
			// The states saved last have the old side live: a reload
			// before the recovery must not bring it back.
			if serr := r.saveState(ctx); serr != nil {
				err = fmt.Errorf("%w; %w", err, serr)
			}
		}
		return fmt.Errorf("the old side %s/%s, in maintenance now, did not drain: %w; the new side serves at full weight, the old container runs on for its sessions, and the journal in %s is kept: `haroll recover` (or the agent's next start) finishes it", s.Backend, s.Server, err, a.cfg.StateDir)
	}
	// The idle side keeps the slot's weight for its next turn; in
	// maintenance it hands out nothing.
	if err := r.hold(func() error {
		if r.e.DrainMode == DrainState {
			return nil
		}
		return a.haproxy.SetWeight(ctx, s.Backend, s.Server, r.p.weight)
	}); err != nil {
		return err
	}
	if err := r.record(PhaseCleanup, func(e *Entry) { e.Drained = false }); err != nil {
		return err
	}
	// Saved before the old container goes: until then a reload that loads
	// the states of the surge (both sides live) finds it still serving.
	if err := r.saveState(ctx); err != nil {
		return fmt.Errorf("%w; the old side is in maintenance, its container kept, the journal in %s too: `haroll recover` finishes it", err, a.cfg.StateDir)
	}
	old := Leftover{Slot: s.Name, ID: r.e.OldID}
	if err := r.step(PhaseCleanup, func() (string, error) { return shortID(old.ID), ignoreGone(a.removeLeftover(old)) }); err != nil {
		if lerr := a.keepLeftover(c, old); lerr != nil {
			return fmt.Errorf("old container %s was not removed (%w) nor recorded for a later removal (%w): the journal in %s is kept", shortID(old.ID), err, lerr, a.cfg.StateDir)
		}
	}
	return r.journal.Clear()
}

// rollbackSurge undoes a surge that was not proven: the idle server back in
// maintenance (empty first: it may have been out of it in the gate) with its
// weight, the new container stopped and removed, the old one given its name
// back. The live side was never touched. It goes on past errors; the
// journal stays when one fails (ErrRollback), for the next recovery.
func (r *replacement) rollbackSurge(parent context.Context, cause error) error {
	a, s, pe := r.a, r.p.slot, r.e.Pair
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), a.cfg.Drain.Timeout+a.grace)
	defer cancel()
	r.log.Warn("rolling back the new side", "cause", cause)
	var errs []error
	undo := func(what string, fn func() error) {
		if err := a.retry(ctx, r.log, what, fn); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	_ = r.step(PhaseRollback, func() (string, error) {
		if r.e.Drained {
			undo("put the idle server back in maintenance", func() error { return r.quiesce(ctx) })
			if len(errs) > 0 {
				return "", errors.Join(errs...) // the new container stays until HAProxy can be told
			}
		}
		if r.e.NewID != "" {
			undo("stop new container", func() error { return ignoreGone(a.docker.Stop(ctx, r.e.NewID)) })
			undo("remove new container", func() error { return ignoreGone(a.docker.Remove(ctx, r.e.NewID)) })
		}
		if r.e.Renamed {
			undo("rename old container back", func() error { return r.renameOldBack(ctx) })
		}
		if r.e.Drained && len(errs) == 0 {
			undo("give the idle server its weight back", func() error {
				return r.hold(func() error {
					if err := a.haproxy.SetWeight(ctx, s.Backend, s.Server, pe.IdleWeight); err != nil {
						return err
					}
					r.e.Drained = false
					return nil
				})
			})
		}
		if len(errs) > 0 {
			return "", errors.Join(errs...)
		}
		return fmt.Sprintf("old container %s (%s) serving on %s, untouched; %s back in maintenance", shortID(r.p.old.ID), r.p.old.Image, pe.Live, pe.Idle), nil
	})
	if len(errs) > 0 {
		err := fmt.Errorf("%w: %w", ErrRollback, errors.Join(errs...))
		r.markFailed(err)
		return err
	}
	if err := r.saveState(ctx); err != nil {
		// The states of before the surge are what HAProxy loads anyway
		// unless someone saved since; the live side is untouched.
		r.log.Warn("rolled back, but the servers' states could not be saved", "error", err)
	}
	return r.journal.Clear()
}

// saveState saves the servers' states for HAProxy's next reload, retrying
// while HAProxy does not answer (within the agent's grace). A surge or a
// retirement must not go on without it: a reload would load the states of
// before, with the other side live.
func (r *replacement) saveState(ctx context.Context) error {
	path := r.e.Pair.StateFile
	if path == "" {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.a.grace)
	defer cancel()
	err := r.a.retry(sctx, r.log, "save the servers' states", func() error { return r.a.saveServerState(sctx, path) })
	if err != nil {
		return fmt.Errorf("save the servers' states to %s for HAProxy's reloads: %w", path, err)
	}
	return nil
}

// pairStateFiles are the state files the pair slots of plans save.
func pairStateFiles(plans []plan) []string {
	var files []string
	for _, p := range plans {
		if p.pair != nil && p.pair.stateFile != "" && !slices.Contains(files, p.pair.stateFile) {
			files = append(files, p.pair.stateFile)
		}
	}
	return files
}

// checkStateFiles saves the servers' states once to each file the pair
// slots of plans use: the file must be writable before anything changes,
// since every step of the redeploy saves the states there. Saving now
// writes what HAProxy runs with now.
func (a *Agent) checkStateFiles(ctx context.Context, plans []plan) error {
	var errs []error
	for _, f := range pairStateFiles(plans) {
		if err := a.saveServerState(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("blue/green slots: cannot save the servers' states to %s, which HAProxy loads at a reload: %w; make its directory exist and be writable by the agent", f, err))
		}
	}
	return errors.Join(errs...)
}

// resaveStates saves the servers' states to files again, once a slot that a
// pair's save may have caught mid-replacement is done.
func (a *Agent) resaveStates(ctx context.Context, files []string) {
	for _, f := range files {
		if err := a.saveServerState(context.WithoutCancel(ctx), f); err != nil {
			a.log.Error("the servers' states could not be saved again: until the next save, a reload would load those of a moment when a slot was being replaced", "file", f, "error", err)
		}
	}
}

// pairRuns runs the surges of a redeploy's blue/green slots, at most
// max_surge at once, and their retirements in the background: the old side
// of one slot drains while the next slot surges, its capacity being whole
// already.
type pairRuns struct {
	cleaner     *cleaner                     // the redeploy's, for old containers not removed
	ended       func(i int, r replaceResult) // a slot's surge and retirement ended
	sem         chan struct{}                // one per surge under way
	surges      sync.WaitGroup
	retirements sync.WaitGroup

	mu   sync.Mutex
	err  error    // the first failure: no further slot starts
	done []string // slots whose surge succeeded
	// panicked is the first panic of a surge or retirement, raised again
	// by wait in the caller's goroutine, as a slot replaced there would.
	panicked any
}

func newPairRuns(maxSurge int, c *cleaner, ended func(i int, r replaceResult)) *pairRuns {
	return &pairRuns{cleaner: c, ended: ended, sem: make(chan struct{}, max(maxSurge, 1))}
}

// acquire waits for room for one more surge; start or release gives it back.
func (pr *pairRuns) acquire() { pr.sem <- struct{}{} }
func (pr *pairRuns) release() { <-pr.sem }

// waitSurges waits until no surge is under way (retirements may be).
func (pr *pairRuns) waitSurges() { pr.surges.Wait() }

// wait waits for every surge and retirement.
func (pr *pairRuns) wait() {
	pr.surges.Wait()
	pr.retirements.Wait()
	if pr.panicked != nil {
		panic(pr.panicked)
	}
}

// catch keeps a panic of the goroutine it is deferred in for wait.
func (pr *pairRuns) catch() {
	if v := recover(); v != nil {
		pr.fail(fmt.Errorf("panic: %v", v))
		pr.mu.Lock()
		if pr.panicked == nil {
			pr.panicked = v
		}
		pr.mu.Unlock()
	}
}

func (pr *pairRuns) failed() error {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.err
}

func (pr *pairRuns) names() []string {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.Clone(pr.done)
}

func (pr *pairRuns) fail(err error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.err == nil {
		pr.err = err
	}
}

// start runs plan p's surge (acquire came first) and then its retirement,
// in the background; the slot's result lands in results[i] once both ended
// (read it after wait).
func (pr *pairRuns) start(ctx context.Context, a *Agent, i int, p plan, image string, events func(Event), results []*replaceResult) {
	pr.surges.Add(1)
	go func() {
		if ret := pr.surge(ctx, a, p, image, events, &results[i], i); ret != nil {
			pr.retire(ctx, p, results[i], ret, i)
		}
	}()
}

// surge runs p's surge, puts its result in *out and frees its place; when
// it succeeded, the retirement is counted before the surge ends, so that
// wait sees it.
func (pr *pairRuns) surge(ctx context.Context, a *Agent, p plan, image string, events func(Event), out **replaceResult, i int) *replacement {
	defer pr.surges.Done()
	defer pr.release()
	defer pr.catch() // first: a panic is kept before the surge counts as ended
	res, ret := a.replacePair(ctx, p, image, events)
	*out = &res
	if res.err != nil {
		pr.ended(i, res)
		pr.fail(fmt.Errorf("slot %s: %w", p.slot.Name, res.err))
		return nil
	}
	pr.mu.Lock()
	pr.done = append(pr.done, p.slot.Name)
	pr.mu.Unlock()
	if ret == nil { // a canary: both sides serve on, nothing to retire
		pr.ended(i, res)
		return nil
	}
	pr.retirements.Add(1)
	return ret
}

// retire runs the retirement ret of p's old side and adds it to res.
func (pr *pairRuns) retire(ctx context.Context, p plan, res *replaceResult, ret *replacement, i int) {
	defer pr.retirements.Done()
	defer pr.catch()
	defer func() { pr.ended(i, *res) }()
	begin := time.Now()
	err := ret.retire(ctx, pr.cleaner)
	for ph, d := range ret.report.Phases {
		res.report.Phases[ph] += d
	}
	res.report.Total += time.Since(begin)
	if err != nil {
		res.err = err
		res.report.Result, res.report.Err = ResultFailed, err.Error()
		pr.fail(fmt.Errorf("slot %s: %w", p.slot.Name, err))
	}
}

// recoverPairs finishes or undoes the halves of blue/green redeploys that a
// crash cut off, as their journals say: a retirement is finished (the old
// side drained into maintenance, the old container removed); a surge whose
// new side passed the gate is checked again and finished, its retirement
// included; an earlier one is undone. It returns what it did.
func (a *Agent) recoverPairs(ctx context.Context) (string, error) {
	var did []string
	var errs []error
	for _, kind := range []string{retireJournal, surgeJournal} {
		files, err := filepath.Glob(filepath.Join(a.cfg.StateDir, kind+"-*.json"))
		if err != nil {
			return "", err
		}
		for _, f := range files {
			name := filepath.Base(f)
			slotName, _ := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(name, kind+"-"), ".json"))
			j := a.pairJournal(kind, slotName)
			e, err := j.Read()
			if err != nil || e == nil {
				errs = append(errs, err)
				continue
			}
			slot, ok := a.slot(e.Slot)
			if !ok || !slot.pair() || e.Pair == nil {
				errs = append(errs, fmt.Errorf("the journal %s names slot %q, which is no longer a configured blue/green slot: put it back in the config to recover it", f, e.Slot))
				continue
			}
			var what string
			if kind == retireJournal {
				what, err = a.recoverRetirement(ctx, slot, j, *e)
			} else {
				what, err = a.recoverSurge(ctx, slot, j, *e)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("slot %s: %w", e.Slot, err))
				continue
			}
			did = append(did, what)
		}
	}
	return strings.Join(did, "; "), errors.Join(errs...)
}

// pairPlanOf rebuilds, from a journal entry, the plan of the half whose
// server is server.
func pairPlanOf(slot SlotConfig, e Entry, server string) plan {
	p := plan{slot: slot, old: docker.Container{ID: e.OldID, Image: e.OldImage}, weight: e.Weight, state: e.State, addr: e.Addr, startFirst: true}
	p.slot.Server = server
	p.pair = &pairPlan{live: e.Pair.Live, idle: e.Pair.Idle, idleAddr: e.Addr, idleWeight: e.Pair.IdleWeight, stateFile: e.Pair.StateFile}
	return p
}

func (a *Agent) recoverRetirement(ctx context.Context, slot SlotConfig, j Journal, e Entry) (string, error) {
	r := a.newReplacement(pairPlanOf(slot, e, e.Pair.Live), e.Image, a.observed(nil))
	r.journal, r.e = j, e
	r.log.Warn("recovering the retirement of a blue/green slot's old side, cut off by a crash", "phase", e.Phase)
	// A promoted canary's record may be left by a crash right after the
	// retirement was journaled: the retirement supersedes it.
	if err := a.forgetPairCanary(slot.Name); err != nil {
		return "", err
	}
	// The new side must serve before the old one is drained any further: a
	// reload since may have loaded states with it in maintenance, or its
	// container may have died. One that serves (out of MAINT, fully UP by
	// HAProxy's own checks, at its weight, its container running) is left
	// alone: forcing its health down to prove it would take its capacity
	// away. Else it is proven again under the surge's journal.
	if a.newSideServes(ctx, slot, e) {
		if err := r.retire(ctx, nil); err != nil {
			return "", err
		}
		if err := a.pairJournal(surgeJournal, slot.Name).Clear(); err != nil {
			return "", err
		}
		return fmt.Sprintf("slot %s: finished the retirement of the old side %s (cut off in phase %s); %s serves", slot.Name, e.Pair.Live, e.Phase, e.Pair.Idle), nil
	}
	ns := a.newReplacement(pairPlanOf(slot, e, e.Pair.Idle), e.Image, a.observed(nil))
	ns.journal = a.pairJournal(surgeJournal, slot.Name)
	ns.e = e
	ns.e.Phase, ns.e.DrainMode, ns.e.Drained, ns.e.Maint, ns.e.Proven = PhaseRestore, DrainWeight, true, false, true
	if err := ns.journal.Write(ns.e); err != nil {
		return "", err
	}
	stopGuard := ns.guard(ctx)
	err := ns.reprove(ctx)
	if err == nil {
		_ = ns.hold(func() error { ns.serving = ns.finalWeight(); return nil })
		_, err = ns.giveBack(ctx, ns.finalWeight())
		if err == nil {
			err = ns.saveState(ctx)
		}
	}
	stopGuard()
	if err != nil {
		if transient(err) || ctx.Err() != nil {
			return "", fmt.Errorf("checking the new side %s before its old side is retired: %w (the journals are kept: the next recovery tries again)", e.Pair.Idle, err)
		}
		return a.reviveOldSide(ctx, r, ns, err)
	}
	if err := r.retire(ctx, nil); err != nil {
		return "", err
	}
	if err := ns.journal.Clear(); err != nil {
		return "", err
	}
	return fmt.Sprintf("slot %s: finished the retirement of the old side %s (cut off in phase %s); %s serves", slot.Name, e.Pair.Live, e.Phase, e.Pair.Idle), nil
}

// newSideServes reports whether the new side of the pair e retires the old
// side of serves now: its server out of maintenance, fully UP by HAProxy's
// checks, at a weight, and its container running.
func (a *Agent) newSideServes(ctx context.Context, slot SlotConfig, e Entry) bool {
	srv, err := a.haproxy.Server(ctx, slot.Backend, e.Pair.Idle)
	if err != nil || !srv.FullyUp() || srv.Weight == 0 {
		return false
	}
	adm, err := a.haproxy.Admin(ctx, slot.Backend, e.Pair.Idle)
	if err != nil || adm.State != runtime.StateReady {
		return false
	}
	c, err := a.docker.Inspect(ctx, e.NewID)
	return err == nil && c.Running
}

// reviveOldSide puts a pair back on its old side when the new side, proven
// before a crash cut its old side's retirement off, fails now: the old
// server (whose container is not removed before the retirement's end) is
// proven by fresh checks and given its weight, then the new side is undone
// as a failed surge is.
func (a *Agent) reviveOldSide(ctx context.Context, old, ns *replacement, cause error) (string, error) {
	old.log.Warn("the new side fails now: bringing the old side back", "error", cause)
	if old.inMaint() {
		hctx, cancel := context.WithTimeout(ctx, a.cfg.Health.Timeout)
		_, err := old.freshCheck(hctx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("the new side %s fails (%v) and the old side %s could not be proven again: %w; the journals in %s are kept", ns.e.Pair.Idle, cause, old.e.Pair.Live, err, a.cfg.StateDir)
		}
	}
	if _, err := old.giveBack(ctx, old.p.weight); err != nil {
		return "", err
	}
	if err := old.journal.Clear(); err != nil {
		return "", err
	}
	_ = ns.hold(func() error { ns.serving = 0; return nil })
	if err := ns.record(PhaseGate, func(e *Entry) { e.Proven = false }); err != nil {
		return "", err
	}
	if err := ns.rollbackSurge(ctx, cause); err != nil {
		return "", err
	}
	return fmt.Sprintf("slot %s: the new side %s failed after the crash (%v): back on the old side %s", old.p.slot.Name, ns.e.Pair.Idle, cause, old.e.Pair.Live), nil
}

func (a *Agent) recoverSurge(ctx context.Context, slot SlotConfig, j Journal, e Entry) (string, error) {
	r := a.newReplacement(pairPlanOf(slot, e, e.Pair.Idle), e.Image, a.observed(nil))
	r.journal, r.e = j, e
	stopGuard := r.guard(ctx)
	defer stopGuard()
	r.log.Warn("recovering the surge of a blue/green slot, cut off by a crash", "phase", e.Phase, "proven", e.Proven)
	if e.Proven {
		err := r.reprove(ctx)
		if err == nil {
			if err := r.finishSurge(ctx); err != nil {
				return "", err
			}
			stopGuard()
			if r.retiring == nil {
				return fmt.Sprintf("slot %s: finished the canary surge by %s (it had passed the health gate): %s at weight %d beside %s", slot.Name, e.Image, e.Pair.Idle, r.finalWeight(), e.Pair.Live), nil
			}
			if err := r.retiring.retire(ctx, nil); err != nil {
				return "", err
			}
			return fmt.Sprintf("slot %s: finished the surge by %s (it had passed the health gate) and retired the old side %s", slot.Name, e.Image, e.Pair.Live), nil
		}
		if transient(err) || ctx.Err() != nil {
			return "", fmt.Errorf("checking the new side, proven before the crash, before it gets its traffic: %w (the journal is kept: the next recovery tries again)", err)
		}
		r.log.Warn("the new side, proven before the crash, fails now: rolling back", "error", err)
		if rerr := r.record(PhaseGate, func(e *Entry) { e.Proven = false }); rerr != nil {
			return "", rerr
		}
	}
	// A crash between the create and the journal's record of it leaves the
	// new container under the slot's name: that is the one to remove.
	if r.e.NewID == "" && e.Phase == PhaseCreate {
		a.settleCreate(ctx, j)
	}
	if c, err := a.docker.Inspect(ctx, slot.Container); err == nil && c.ID != e.OldID && r.e.NewID == "" {
		_ = r.hold(func() error { r.e.NewID = c.ID; return nil })
	}
	rollback := func() error { return r.rollbackSurge(ctx, ErrRecovered) }
	if undoing(e) { // the new side of a canary had traffic: drained first
		rollback = func() error { return r.undoCanary(ctx) }
	}
	if err := rollback(); err != nil {
		return "", err
	}
	// An undone canary's record may be left by a crash right after the
	// undo was journaled.
	if err := a.forgetPairCanary(slot.Name); err != nil {
		return "", err
	}
	return fmt.Sprintf("slot %s: rolled back the new side (cut off in phase %s); %s serves on, untouched", slot.Name, e.Phase, e.Pair.Live), nil
}
