package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/haroll/haroll/docker"
)

var (
	// ErrWedged: an earlier replacement could not be finished or rolled
	// back, and the request does not take its slot over; nothing changed.
	ErrWedged = errors.New("an earlier replacement is unsettled")
	// ErrOldGone: a rollback found the old container gone; it kept the new
	// one, stopped, as the template of a take-over.
	ErrOldGone = errors.New("the old container is gone")
	// ErrNoTemplate: a take-over found no container to clone the slot's
	// configuration from.
	ErrNoTemplate = errors.New("nothing to clone the slot from")
	// ErrNothingPending: Abandon found no journal.
	ErrNothingPending = errors.New("nothing pending")
)

// oldGone reports whether the old container no longer exists. An answer
// that is not "not found" (Docker down past the rollback's bound) counts as
// there: the rollback then goes on as it would.
func (r *replacement) oldGone(ctx context.Context) bool {
	var err error
	_ = r.a.retry(ctx, r.log, "inspect old container", func() error {
		_, err = r.a.docker.Inspect(ctx, r.p.old.ID)
		return err
	})
	return errors.Is(err, docker.ErrContainerNotFound)
}

// keptError is the rollback's error when the old container is gone.
func (r *replacement) keptError(ctx context.Context) error {
	s := r.p.slot
	if _, err := r.a.docker.Inspect(ctx, r.e.NewID); errors.Is(err, docker.ErrContainerNotFound) {
		return fmt.Errorf("%w: old container %s and new container %s of slot %s are both gone, so there is nothing to clone the slot's configuration from, and %s/%s stays in maintenance: recreate container %s by hand, then run `haroll recover --abandon`",
			ErrOldGone, shortID(r.p.old.ID), shortID(r.e.NewID), s.Name, s.Backend, s.Server, s.Container)
	}
	return fmt.Errorf("%w: old container %s of slot %s is gone (removed, or created with --rm and deleted by its stop), so the new container %s (%s) is kept, stopped, as the only copy of the slot's configuration, and %s/%s stays in maintenance: `haroll redeploy --slot %s --image <a working image>` takes the slot over from it; or recreate container %s by hand and run `haroll recover --abandon`",
		ErrOldGone, shortID(r.p.old.ID), s.Name, shortID(r.e.NewID), r.image, s.Backend, s.Server, s.Name, s.Container)
}

// markFailed records in the journal that undoing it failed with err, so
// that Status, the metrics and `haroll recover --status` show the slot
// wedged. A failure to write is only logged: the entry it would amend
// stays as it was, and the rollback's error is returned anyway.
func (r *replacement) markFailed(err error) {
	if werr := r.record(r.e.Phase, func(e *Entry) { e.Failure, e.FailedAt = err.Error(), time.Now() }); werr != nil {
		r.log.Error("cannot record the failed rollback in the journal", "error", werr)
	}
}

// markJournalFailed records that a recovery of the journal's entry failed
// with err, when the entry is still there (a finish of a proven entry that
// failed, say): Status and the metrics then show the slot wedged. The host
// lock must be held.
func (a *Agent) markJournalFailed(err error) {
	// HAProxy or Docker not answering, a cancelled recovery, old containers
	// of finished slots: the next recovery is expected to settle these, so
	// the slot is pending, not wedged.
	if transient(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || OnlyLeftovers(err) {
		return
	}
	j := Journal{dir: a.cfg.StateDir}
	e, rerr := j.Read()
	if rerr != nil || e == nil {
		return
	}
	e.Failure, e.FailedAt = err.Error(), time.Now()
	if werr := j.Write(*e); werr != nil {
		a.log.Error("cannot record the failed recovery in the journal", "error", werr)
	}
}

// ContainerState is one container of a pending replacement as Docker sees
// it now.
type ContainerState struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Image string `json:"image,omitempty"`
	// State is running, exited, gone, or unknown (Err says why).
	State string `json:"state"`
	Err   string `json:"error,omitempty"`
}

// ServerState is a slot's HAProxy server as HAProxy reports it now.
type ServerState struct {
	Backend string `json:"backend"`
	Server  string `json:"server"`
	Status  string `json:"status,omitempty"`
	Admin   string `json:"admin_state,omitempty"`
	Weight  int    `json:"weight"`
	Addr    string `json:"addr,omitempty"`
	Err     string `json:"error,omitempty"`
}

// Pending is a replacement that did not end (the journal), what is there
// now, and what comes next.
type Pending struct {
	// Journal is nil when nothing is pending; the rest is then empty.
	Journal *Entry `json:"journal"`
	// Busy names who holds the host lock: the entry is then that
	// replacement's own, in progress.
	Busy   string          `json:"busy,omitempty"`
	Old    *ContainerState `json:"old_container,omitempty"`
	New    *ContainerState `json:"new_container,omitempty"`
	Server *ServerState    `json:"server,omitempty"`
	// Recover says what `haroll recover` (and the next redeploy or agent
	// start) would do; Forward the operator's ways forward, when the slot
	// is wedged.
	Recover string   `json:"recover,omitempty"`
	Forward []string `json:"forward,omitempty"`
	// Pairs are the halves of blue/green redeploys that did not end, each
	// in its own journal (surge-<slot>.json, retire-<slot>.json).
	Pairs []PairPending `json:"pairs,omitempty"`
}

// PairPending is one half of a blue/green slot's redeploy that did not end,
// what is there now, and what a recovery would do.
type PairPending struct {
	Kind    string          `json:"kind"` // surge or retire
	Journal *Entry          `json:"journal"`
	Old     *ContainerState `json:"old_container,omitempty"`
	New     *ContainerState `json:"new_container,omitempty"`
	// Live is the server that served before the redeploy (the old
	// container's), Idle the new container's.
	Live    *ServerState `json:"live_server,omitempty"`
	Idle    *ServerState `json:"idle_server,omitempty"`
	Recover string       `json:"recover,omitempty"`
	Err     string       `json:"error,omitempty"` // the journal could not be read
}

// Pending reads the journals and what Docker and HAProxy hold now, without
// the host lock and without changing anything. It fails only when the
// single-slot journal cannot be read; a pair journal that cannot be read is
// listed with its error.
func (a *Agent) Pending(ctx context.Context) (Pending, error) {
	e, err := (Journal{dir: a.cfg.StateDir}).Read()
	if err != nil {
		return Pending{}, err
	}
	pairs := a.pendingPairs(ctx)
	if e == nil {
		return Pending{Pairs: pairs, Busy: busyIf(len(pairs) > 0, a)}, nil
	}
	p := Pending{Journal: e, Busy: a.Busy(), Pairs: pairs}
	slot, ok := a.slot(e.Slot)
	if !ok {
		p.Recover = fmt.Sprintf("nothing: slot %q is no longer configured; put it back in the config to recover it", e.Slot)
		return p, nil
	}
	p.Old = a.containerState(ctx, e.OldID)
	if c, found, err := a.journalNew(ctx, slot, *e); err != nil {
		p.New = &ContainerState{ID: e.NewID, State: "unknown", Err: err.Error()}
	} else if found {
		p.New = stateOf(c)
	} else if e.NewID != "" {
		p.New = &ContainerState{ID: e.NewID, State: "gone"}
	}
	p.Server = a.serverState(ctx, slot)
	p.Recover, p.Forward = a.nextSteps(slot, *e, p.Old, p.New)
	return p, nil
}

func busyIf(pending bool, a *Agent) string {
	if !pending {
		return ""
	}
	return a.Busy()
}

// pendingPairs lists the pair journals in state_dir, retirements first (as
// recoverPairs takes them).
func (a *Agent) pendingPairs(ctx context.Context) []PairPending {
	var out []PairPending
	for _, kind := range []string{retireJournal, surgeJournal} {
		for _, s := range a.cfg.Slots {
			if !s.pair() {
				continue
			}
			e, err := a.pairJournal(kind, s.Name).Read()
			switch {
			case err != nil:
				out = append(out, PairPending{Kind: kind, Err: err.Error()})
				continue
			case e == nil:
				continue
			}
			pp := PairPending{Kind: kind, Journal: e}
			if e.Pair == nil {
				pp.Err = "the journal has no pair section: `haroll recover --abandon` drops it"
				out = append(out, pp)
				continue
			}
			pp.Old = a.containerState(ctx, e.OldID)
			if e.NewID != "" {
				pp.New = a.containerState(ctx, e.NewID)
			}
			live, idle := s, s
			live.Server, idle.Server = e.Pair.Live, e.Pair.Idle
			pp.Live, pp.Idle = a.serverState(ctx, live), a.serverState(ctx, idle)
			pp.Recover = pairNextStep(s, kind, *e)
			out = append(out, pp)
		}
	}
	return out
}

// pairNextStep says what a recovery (recoverPairs) would do with e.
func pairNextStep(s SlotConfig, kind string, e Entry) string {
	pe := e.Pair
	var did string
	switch {
	case kind == retireJournal:
		did = fmt.Sprintf("finish the retirement of the old side %s/%s: if the new side %s serves (UP by HAProxy's checks, at a weight, its container running) drain %s persistence-safe into maintenance, give it weight %d there, save the servers' states and remove the old container %s; else prove %s again by fresh checks, and if that fails bring %s back and undo %s",
			s.Backend, pe.Live, pe.Idle, pe.Live, e.Weight, shortID(e.OldID), pe.Idle, pe.Live, pe.Idle)
	case e.Proven && e.Canary:
		did = fmt.Sprintf("finish the canary: prove the new side %s/%s again by fresh checks, give it weight %d beside %s at %d and record the canary (if it fails now: roll it back as below)",
			s.Backend, pe.Idle, e.Final, pe.Live, e.Weight)
	case e.Proven:
		did = fmt.Sprintf("finish it: prove the new side %s/%s (%s) again by fresh checks, give it weight %d, save the servers' states, then retire the old side %s (drained persistence-safe, the old container %s removed); if the new side fails now, roll it back instead",
			s.Backend, pe.Idle, e.Image, e.Weight, pe.Live, shortID(e.OldID))
	default:
		did = fmt.Sprintf("roll the new side back: %s/%s emptied into maintenance with its weight %d, the new container %s stopped and removed, the old container %s given the name %s back; %s serves on, untouched",
			s.Backend, pe.Idle, pe.IdleWeight, dash(shortID(e.NewID)), shortID(e.OldID), s.Container, pe.Live)
	}
	if e.Failure != "" {
		did += fmt.Sprintf(" (the last try failed at %s: %s)", e.FailedAt.Format(time.RFC3339), e.Failure)
	}
	return did
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *Agent) slot(name string) (SlotConfig, bool) {
	for _, s := range a.cfg.Slots {
		if s.Name == name {
			return s, true
		}
	}
	return SlotConfig{}, false
}

func (a *Agent) containerState(ctx context.Context, id string) *ContainerState {
	c, err := a.docker.Inspect(ctx, id)
	switch {
	case errors.Is(err, docker.ErrContainerNotFound):
		return &ContainerState{ID: id, State: "gone"}
	case err != nil:
		return &ContainerState{ID: id, State: "unknown", Err: err.Error()}
	}
	return stateOf(c)
}

func stateOf(c docker.Container) *ContainerState {
	st := "exited"
	if c.Running {
		st = "running"
	}
	return &ContainerState{ID: c.ID, Name: c.Name, Image: c.Image, State: st}
}

func (a *Agent) serverState(ctx context.Context, s SlotConfig) *ServerState {
	out := &ServerState{Backend: s.Backend, Server: s.Server}
	srv, err := a.haproxy.Server(ctx, s.Backend, s.Server)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	out.Status, out.Weight, out.Addr = srv.Status, srv.Weight, srv.Addr
	if adm, err := a.haproxy.Admin(ctx, s.Backend, s.Server); err != nil {
		out.Err = err.Error()
	} else {
		out.Admin = string(adm.State)
	}
	return out
}

// nextSteps says what a recovery of e would do, and, when it cannot undo it,
// the ways forward.
func (a *Agent) nextSteps(s SlotConfig, e Entry, old, new *ContainerState) (string, []string) {
	weight := fmt.Sprintf("weight %d", e.Weight)
	if e.DrainMode == DrainState {
		weight = fmt.Sprintf("state %s", e.State)
	}
	if e.Proven {
		return fmt.Sprintf("finish it: the new container (%s) passed the health gate; give %s/%s its %s back and remove the old container %s",
				e.Image, s.Backend, s.Server, weight, shortID(e.OldID)),
			[]string{"`haroll recover` retries this; `haroll recover --abandon` forgets it and leaves the server as it is (you then give the weight back by hand)"}
	}
	takeOver := fmt.Sprintf("`haroll redeploy --slot %s --image <a working image>` takes the slot over: it clones %%s with that image, proves it and gives %s/%s its %s back", s.Name, s.Backend, s.Server, weight)
	abandon := fmt.Sprintf("`haroll recover --abandon` puts %s/%s in maintenance (if it is not), forgets the replacement and lists what it leaves; you then mend the slot by hand", s.Backend, s.Server)
	switch {
	case old.State != "gone" && old.State != "unknown":
		did := fmt.Sprintf("roll it back: take %s/%s out of every selection, stop and remove the new container, bring the old container %s (%s) back as %s, prove it with a fresh HAProxy check and give back %s",
			s.Backend, s.Server, shortID(e.OldID), e.OldImage, s.Container, weight)
		if e.Failure == "" {
			return did, nil
		}
		return did + fmt.Sprintf(" (it failed at %s: %s)", e.FailedAt.Format(time.RFC3339), e.Failure),
			[]string{fmt.Sprintf(takeOver, "the old container "+shortID(e.OldID)), abandon}
	case old.State == "gone" && new != nil && new.State != "gone" && new.State != "unknown":
		return fmt.Sprintf("it cannot roll back: the old container %s is gone; it keeps the new container %s (%s) stopped, as the only copy of the slot's configuration, and %s/%s in maintenance",
				shortID(e.OldID), shortID(new.ID), new.Image, s.Backend, s.Server),
			[]string{fmt.Sprintf(takeOver, "the kept container "+shortID(new.ID)), abandon}
	case old.State == "gone":
		return fmt.Sprintf("it cannot roll back: neither the old container %s nor a new one is left; %s/%s stays in maintenance", shortID(e.OldID), s.Backend, s.Server),
			[]string{fmt.Sprintf("recreate container %s by hand, then %s", s.Container, abandon)}
	}
	return "unknown: Docker does not answer (" + old.Err + ")", nil
}

// Abandoned is what Abandon forgot and what it leaves behind.
type Abandoned struct {
	Pending
	// Next lists what the operator must do, in order.
	Next []string `json:"next"`
}

// Abandon forgets the pending replacement, for a slot that neither a
// recovery nor a take-over can settle, and says what is left. It takes the
// host lock (ErrBusy when a replacement runs). Unless the new container
// passed the gate, the server is first taken out of every selection and
// emptied, as a rollback does, with the journal saying so: a server is never
// left selecting a container that was not proven. When that fails, nothing
// is forgotten. ErrNothingPending when there is no journal.
func (a *Agent) Abandon(ctx context.Context, origin string) (Abandoned, error) {
	lock, err := AcquireLock(a.cfg.StateDir, fmt.Sprintf("pid %d: %s since %s", os.Getpid(), origin, time.Now().Format(time.RFC3339)))
	if err != nil {
		return Abandoned{}, err
	}
	defer lock.Release()
	j, e, err := a.abandonable()
	if err != nil {
		return Abandoned{}, err
	}
	s, ok := a.slot(e.Slot)
	if !ok {
		return Abandoned{}, fmt.Errorf("the journal names slot %q, which is no longer configured: put it back in the config, so that haroll knows its server and can take it out of every selection first", e.Slot)
	}
	if e.Pair != nil {
		// The server a blue/green half holds: the idle side a surge
		// brings up, the old side a retirement drains.
		s.Server = e.Pair.Idle
		if j.name != "" && strings.HasPrefix(j.name, retireJournal) {
			s.Server = e.Pair.Live
		}
	}
	if !e.Proven {
		rw := a.newReplacement(plan{slot: s, old: docker.Container{ID: e.OldID, Image: e.OldImage}, weight: e.Weight, state: e.State, addr: e.Addr}, e.Image, a.observed(nil))
		rw.e = *e
		qctx, cancel := context.WithTimeout(ctx, a.cfg.Drain.Timeout+a.grace)
		defer cancel()
		if err := a.retry(qctx, rw.log, "take the server out of every selection", func() error { return rw.quiesce(qctx) }); err != nil {
			return Abandoned{}, fmt.Errorf("cannot take %s/%s out of every selection, so the replacement is not abandoned (the journal is kept): %w", s.Backend, s.Server, err)
		}
	}
	if err := j.Clear(); err != nil {
		return Abandoned{}, err
	}
	a.log.Warn("abandoned the pending replacement", "slot", s.Name, "image", e.Image, "phase", e.Phase, "origin", origin)
	out := Abandoned{Pending: Pending{Journal: e, Old: a.containerState(ctx, e.OldID)}}
	if c, found, err := a.journalNew(ctx, s, *e); err == nil && found {
		out.New = stateOf(c)
	}
	out.Server = a.serverState(ctx, s)
	out.Next = a.afterAbandon(s, *e, out.Pending)
	return out, nil
}

// abandonable is the journal Abandon drops: the single-slot one, else the
// first half of a blue/green redeploy (a surge's, then a retirement's).
func (a *Agent) abandonable() (Journal, *Entry, error) {
	j := Journal{dir: a.cfg.StateDir}
	e, err := j.Read()
	if err != nil || e != nil {
		return j, e, err
	}
	for _, kind := range []string{surgeJournal, retireJournal} {
		for _, s := range a.cfg.Slots {
			pj := a.pairJournal(kind, s.Name)
			if e, err := pj.Read(); err != nil || e != nil {
				return pj, e, err
			}
		}
	}
	return j, nil, fmt.Errorf("%w: there is no journal in %s, so there is nothing to abandon", ErrNothingPending, a.cfg.StateDir)
}

// afterAbandon is what the operator must do once the entry is abandoned.
func (a *Agent) afterAbandon(s SlotConfig, e Entry, left Pending) []string {
	sock := a.cfg.HAProxy.Socket
	say := func(cmd string) string { return fmt.Sprintf("echo %q | socat stdio %s", cmd, sock) }
	srv := s.Backend + "/" + s.Server
	var kept []string
	for _, c := range []*ContainerState{left.Old, left.New} {
		if c != nil && c.State != "gone" {
			kept = append(kept, fmt.Sprintf("%s %s (%s, %s)", shortID(c.ID), c.Name, c.Image, c.State))
		}
	}
	keptLine := "no container of the slot is left"
	if len(kept) > 0 {
		keptLine = fmt.Sprintf("containers kept: %v; a name ending in %s or %s is haroll's: rename the one to keep to %s, remove the other", kept, prevSuffix, nextSuffix, s.Container)
	}
	if e.Proven {
		// What finish would have given back: the canary's share, and in
		// drain mode the state (the drain left the weight alone).
		weight := e.Weight
		if e.Final > 0 || e.Canary {
			weight = e.Final
		}
		giveBack := say(fmt.Sprintf("set server %s weight %d", srv, weight))
		if e.DrainMode == DrainState {
			giveBack = say(fmt.Sprintf("set server %s state %s", srv, e.State))
			if weight != e.Weight {
				giveBack += ", then " + say(fmt.Sprintf("set server %s weight %d", srv, weight))
			}
		}
		return []string{
			keptLine,
			fmt.Sprintf("the new container passed the health gate; give %s its traffic back: %s", srv, giveBack),
			fmt.Sprintf("then remove the old container %s: docker rm -f %s", shortID(e.OldID), shortID(e.OldID)),
		}
	}
	return []string{
		fmt.Sprintf("%s is in maintenance (weight %d; before the replacement: weight %d, state %s): no request reaches the slot", srv, left.Server.Weight, e.Weight, e.State),
		keptLine,
		fmt.Sprintf("make container %s run an image that works and answer on its port (docker start, or recreate it)", s.Container),
		fmt.Sprintf("if its address is not the server's (%s): %s", left.Server.Addr, say(fmt.Sprintf("set server %s addr <ip> port <port>", srv))),
		fmt.Sprintf("give the server its traffic back: %s, then %s", say(fmt.Sprintf("set server %s weight %d", srv, e.Weight)), say(fmt.Sprintf("set server %s state %s", srv, e.State))),
		fmt.Sprintf("from then on `haroll redeploy --slot %s --image <image>` works for the slot again", s.Name),
	}
}
