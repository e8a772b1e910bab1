package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/haroll/haroll/runtime"
)

// SlotStatus is what one slot runs and how HAProxy sees it.
type SlotStatus struct {
	Slot        string `json:"slot"`
	Backend     string `json:"backend"`
	Server      string `json:"server"`
	Container   string `json:"container"`
	ContainerID string `json:"container_id,omitempty"`
	Image       string `json:"image,omitempty"`
	Running     bool   `json:"running"`
	Health      string `json:"docker_health,omitempty"`
	Status      string `json:"haproxy_status,omitempty"`
	Weight      int    `json:"weight"`
	Scur        int    `json:"scur"`
	Addr        string `json:"addr,omitempty"`
	Err         string `json:"error,omitempty"`
	// Canary: the slot runs a canary at Weight; FullWeight is what Promote
	// gives it back.
	Canary     bool `json:"canary,omitempty"`
	FullWeight int  `json:"full_weight,omitempty"`
	// Pending: the journal holds a replacement of the slot that did not
	// end (or runs now).
	Pending *SlotPending `json:"pending,omitempty"`
	// AltServer: the slot is a blue/green pair of Server and AltServer;
	// LiveServer is the side that serves (out of maintenance), whose
	// HAProxy figures the fields above show; "" when neither or both are.
	AltServer  string `json:"alt_server,omitempty"`
	LiveServer string `json:"live_server,omitempty"`
	// CanaryBeside: the pair runs a canary, LiveServer being its new side;
	// this old side serves beside it at FullWeight until the promotion.
	CanaryBeside string `json:"canary_beside,omitempty"`
}

// SlotPending is a slot's entry in the journal.
type SlotPending struct {
	Image   string    `json:"image"`
	Phase   Phase     `json:"phase"`
	Started time.Time `json:"started"`
	Proven  bool      `json:"proven,omitempty"`
	// Wedged: finishing or undoing it failed (Error, at FailedAt); it stays
	// so until a recovery succeeds, a redeploy takes the slot over, or
	// `haroll recover --abandon`.
	Wedged   bool      `json:"wedged,omitempty"`
	Error    string    `json:"error,omitempty"`
	FailedAt time.Time `json:"failed_at,omitempty"`
}

// Status reports every configured slot. A slot whose container or server
// cannot be read carries the error in Err; Status itself only fails when
// nothing can be read at all.
func (a *Agent) Status(ctx context.Context) ([]SlotStatus, error) {
	out := make([]SlotStatus, 0, len(a.cfg.Slots))
	failures := 0
	canaries, canaryErr := a.canaries()
	pending, journalErr := (Journal{dir: a.cfg.StateDir}).Read()
	for _, s := range a.cfg.Slots {
		st := SlotStatus{Slot: s.Name, Backend: s.Backend, Server: s.Server, Container: s.Container}
		c, ok := canaries[s.Name]
		st.Canary, st.FullWeight = ok, c.FullWeight
		var errs []string
		if canaryErr != nil {
			errs = append(errs, canaryErr.Error())
		}
		if journalErr != nil {
			errs = append(errs, journalErr.Error())
		}
		e := pending
		if s.pair() { // the halves of a blue/green redeploy have their own journals
			e = nil
			for _, kind := range []string{surgeJournal, retireJournal} {
				pe, err := a.pairJournal(kind, s.Name).Read()
				if err != nil {
					errs = append(errs, err.Error())
				} else if pe != nil {
					e = pe
				}
			}
		}
		if e != nil && e.Slot == s.Name {
			st.Pending = &SlotPending{Image: e.Image, Phase: e.Phase, Started: e.Started, Proven: e.Proven,
				Wedged: e.Failure != "", Error: e.Failure, FailedAt: e.FailedAt}
		}
		if c, err := a.docker.Inspect(ctx, s.Container); err != nil {
			errs = append(errs, err.Error())
		} else {
			st.ContainerID, st.Image, st.Running, st.Health = shortID(c.ID), c.Image, c.Running, c.Health
		}
		server := s.Server
		if s.pair() {
			st.AltServer = s.Alt.Server
			live, err := a.liveSide(ctx, s)
			switch {
			case c.Surge != nil:
				// Both sides serve: the figures are the canary's.
				st.LiveServer, st.CanaryBeside, server = c.Surge.Pair.Idle, c.Surge.Pair.Live, c.Surge.Pair.Idle
			case err == nil:
				st.LiveServer, server = live, live
			case e != nil && e.Pair != nil:
				// Mid-redeploy both sides may serve (or neither, for a
				// moment): the figures are the old side's until it is
				// retired, and Pending says what runs.
				server = e.Pair.Live
			default:
				errs = append(errs, err.Error())
			}
		}
		if srv, err := a.haproxy.Server(ctx, s.Backend, server); err != nil {
			errs = append(errs, err.Error())
		} else {
			st.Status, st.Weight, st.Scur, st.Addr = srv.Status, srv.Weight, srv.Scur, srv.Addr
		}
		if len(errs) > 0 {
			st.Err = fmt.Sprint(errs)
			failures++
		}
		out = append(out, st)
	}
	if failures == len(out) && len(out) > 0 {
		return out, fmt.Errorf("no slot could be read: %s", out[0].Err)
	}
	return out, nil
}

// liveSide is the server of pair slot s that is out of maintenance; an error
// when neither or both are.
func (a *Agent) liveSide(ctx context.Context, s SlotConfig) (string, error) {
	var live []string
	for _, name := range []string{s.Server, s.Alt.Server} {
		adm, err := a.haproxy.Admin(ctx, s.Backend, name)
		if err != nil {
			return "", fmt.Errorf("haproxy server %s/%s: %w", s.Backend, name, err)
		}
		if adm.State != runtime.StateMaint {
			live = append(live, name)
		}
	}
	if len(live) != 1 {
		return "", fmt.Errorf("blue/green slot %s: %d of %s/%s and %s/%s are out of maintenance, want exactly one", s.Name, len(live), s.Backend, s.Server, s.Backend, s.Alt.Server)
	}
	return live[0], nil
}
