package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/hashicorp/go-multierror"
)

// preflight dials every host and asks its status, with preflightConcurrency
// workers, and returns the hosts to roll (inventory order) and the slots to
// replace. A host's connection is closed once it answered, unless keep says
// its batch comes first: that batch then starts on open connections.
func (r *run) preflight(ctx context.Context, hosts, slots []string, keep func(host string) bool) ([]string, []string, error) {
	statuses := make([]*agentpb.StatusResponse, len(hosts))
	errs := make([]error, len(hosts))
	r.statuses = make(map[string]*agentpb.StatusResponse, len(hosts))
	inPool(len(hosts), preflightConcurrency, func(i int) {
		statuses[i], errs[i] = r.ask(ctx, hosts[i], keep)
	})
	if err := ctx.Err(); err != nil {
		return nil, slots, fmt.Errorf("%w: %w", ErrPreflight, context.Cause(ctx))
	}

	var problems *multierror.Error
	r.skipped = map[string]string{}
	var ready []string
	for i, h := range hosts {
		switch {
		case errs[i] != nil && r.e.SkipUnreachable:
			r.skipped[h] = errs[i].Error()
			r.log.Warn("host skipped", "host", h, "error", errs[i])
			r.emit(Event{Kind: EventSkipped, Host: h, Err: errs[i].Error()})
		case errs[i] != nil:
			problems = multierror.Append(problems, errs[i])
		default:
			ready = append(ready, h)
		}
	}
	if len(slots) == 0 && len(ready) > 0 {
		for _, s := range statuses[slices.Index(hosts, ready[0])].GetSlots() {
			slots = append(slots, s.GetSlot())
		}
		if len(slots) == 0 {
			problems = multierror.Append(problems, fmt.Errorf("host %s: reports no slot, so there is nothing to replace: pass --slot or check its agent configuration", ready[0]))
		}
	}
	for i, h := range hosts {
		if errs[i] != nil {
			continue
		}
		st := statuses[i]
		if st.GetBusy() != "" {
			problems = multierror.Append(problems, fmt.Errorf("host %s: %w: %s", h, ErrBusy, st.GetBusy()))
		}
		have := make(map[string]bool, len(st.GetSlots()))
		for _, s := range st.GetSlots() {
			have[s.GetSlot()] = true
		}
		var missing []string
		for _, s := range slots {
			if !have[s] {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			problems = multierror.Append(problems, fmt.Errorf("host %s: %w: %s (it has %s)", h, ErrMissingSlot, strings.Join(missing, ", "), slotNames(st)))
		}
	}
	if problems.ErrorOrNil() != nil {
		problems.ErrorFormat = listErrors
		return nil, slots, fmt.Errorf("%w: %w", ErrPreflight, problems)
	}
	if len(ready) == 0 {
		return nil, slots, fmt.Errorf("%w: no host answered", ErrPreflight)
	}
	return ready, slots, nil
}

// inPool calls fn(i) for every i in [0, n), workers at a time, and returns
// once every call has: the preflight, the prepull, claims and histories go
// through a fleet of thousands without a goroutine per host.
func inPool(n, workers int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// ask dials h, asks its status (waiting for a busy host on a resume), and
// keeps the connection for the run when keep(h) and h answered; otherwise
// closes it.
func (r *run) ask(ctx context.Context, h string, keep func(string) bool) (*agentpb.StatusResponse, error) {
	a, st, err := r.status(ctx, h)
	if err == nil && r.waitBusy && st.GetBusy() != "" {
		st, err = r.waitIdle(ctx, a, h, st)
	}
	if err == nil {
		cctx, cancel := within(ctx, r.e.ConnectTimeout)
		err = r.claim(cctx, h, a)
		cancel()
	}
	if st != nil {
		r.mu.Lock()
		r.statuses[h] = st
		r.mu.Unlock()
	}
	switch {
	case a == nil:
	case err == nil && keep != nil && keep(h):
		r.conns.put(h, a)
	default:
		r.conns.closeAgent(a)
	}
	return st, err
}

// status dials h and asks its status within ConnectTimeout.
func (r *run) status(ctx context.Context, h string) (Agent, *agentpb.StatusResponse, error) {
	ctx, cancel := within(ctx, r.e.ConnectTimeout)
	defer cancel()
	a, err := r.conns.dialNow(ctx, h)
	if err != nil {
		return nil, nil, fmt.Errorf("host %s: %w", h, asUnreachable(err))
	}
	st, err := a.Status(ctx)
	if err != nil {
		return a, nil, fmt.Errorf("host %s: %w", h, asUnreachable(err))
	}
	return a, st, nil
}

// waitIdle asks h its status every PollInterval until it is no longer busy,
// for at most StepTimeout, and returns the last status: still busy if the
// time ran out. It fails only when ctx is done.
func (r *run) waitIdle(ctx context.Context, a Agent, h string, st *agentpb.StatusResponse) (*agentpb.StatusResponse, error) {
	r.log.Info("waiting for a busy host", "host", h, "busy", st.GetBusy())
	r.emit(Event{Kind: EventWaiting, Host: h, Detail: st.GetBusy()})
	wctx, cancel := within(ctx, r.e.StepTimeout)
	defer cancel()
	every := r.e.PollInterval
	if every <= 0 {
		every = time.Second
	}
	t0 := time.Now()
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, fmt.Errorf("host %s: %w", h, context.Cause(ctx))
			}
			r.log.Warn("host still busy", "host", h, "busy", st.GetBusy(), "waited", time.Since(t0))
			return st, nil
		case <-time.After(every):
		}
		sctx, cancel := within(wctx, r.e.ConnectTimeout)
		now, err := a.Status(sctx)
		cancel()
		if err != nil {
			r.log.Warn("status while waiting for a busy host", "host", h, "error", err)
			continue
		}
		st = now
		if st.GetBusy() == "" {
			r.log.Info("host idle", "host", h, "waited", time.Since(t0))
			return st, nil
		}
	}
}

// inFirstBatch says whether a host is in the first batch strategy makes of
// hosts, should they all answer the preflight.
func inFirstBatch(hosts []string, strategy Strategy) func(string) bool {
	n := strategy.Canary.Of(len(hosts))
	if n == 0 {
		n = strategy.Batch.Of(len(hosts))
	}
	return inSet(hosts[:min(n, len(hosts))])
}

// inSet says whether a host is one of hosts.
func inSet(hosts []string) func(string) bool {
	set := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		set[h] = true
	}
	return func(h string) bool { return set[h] }
}

// asUnreachable makes a dial or Status failure read as ErrUnreachable.
func asUnreachable(err error) error {
	if errors.Is(err, ErrUnreachable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

func slotNames(st *agentpb.StatusResponse) string {
	var names []string
	for _, s := range st.GetSlots() {
		names = append(names, s.GetSlot())
	}
	if len(names) == 0 {
		return "no slot"
	}
	return strings.Join(names, ", ")
}
