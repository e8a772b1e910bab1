package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/hashicorp/go-multierror"
)

// counterTally turns the cumulative counters of one slot into what it
// served since the first sample. A counter that went down means HAProxy
// reloaded and started again from 0: what it shows is all new.
type counterTally struct {
	last  *agentpb.SlotCounters
	total Traffic
}

func (c *counterTally) add(s *agentpb.SlotCounters) {
	if s.GetError() != "" {
		return
	}
	if c.last != nil {
		delta := func(now, before int64) int64 {
			if now < before {
				return now
			}
			return now - before
		}
		econ := delta(s.GetEcon(), c.last.GetEcon())
		c.total.Requests += delta(s.GetResponses(), c.last.GetResponses()) + econ
		c.total.Errors += delta(s.GetHrsp_5Xx(), c.last.GetHrsp_5Xx()) + econ + delta(s.GetEresp(), c.last.GetEresp())
	}
	c.last = s
}

// analyse streams the counters of every host for the window, and sums what
// the canary slots (the first k steps' slots) served, and what the other
// slots of the rollout in the same HAProxy backends served. It stops early
// when a person aborts.
func (r *run) analyse(ctx context.Context, hosts []string, b Batch, k int) (newT, oldT Traffic, decided string, err error) {
	p := r.e.Canary
	every := p.Interval
	if every <= 0 {
		every = max(p.Window/10, 100*time.Millisecond)
	}
	canarySlots := map[string]bool{}
	for _, st := range b.Steps[:k] {
		canarySlots[st.Slot] = true
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	tallies := map[string]*counterTally{} // "host slot"
	backends := map[string]string{}       // "host slot" -> backend
	var streamErrs *multierror.Error
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			a, err := r.connect(actx, h)
			if err == nil {
				// The agent sends a sample at once, every interval, and a
				// last one when the window has passed: it ends the stream.
				err = a.Counters(actx, every, p.Window, func(s *agentpb.CountersSample) {
					mu.Lock()
					defer mu.Unlock()
					for _, c := range s.GetSlots() {
						key := canaryKey(h, c.GetSlot())
						if tallies[key] == nil {
							tallies[key] = &counterTally{}
						}
						tallies[key].add(c)
						backends[key] = c.GetBackend()
					}
				})
			}
			if err != nil && actx.Err() == nil {
				mu.Lock()
				streamErrs = multierror.Append(streamErrs, fmt.Errorf("host %s: counters: %w", h, err))
				mu.Unlock()
			}
		})
	}
	streams := make(chan struct{})
	go func() { wg.Wait(); close(streams) }()
	// The streams end on their own; this bounds an agent that stops sending.
	late := time.NewTimer(p.Window + 2*every + max(r.e.ConnectTimeout, time.Second))
	defer late.Stop()
	poll := time.NewTicker(decisionPoll)
	defer poll.Stop()
wait:
	for {
		select {
		case <-streams:
			break wait
		case <-ctx.Done():
			break wait
		case <-late.C:
			mu.Lock()
			streamErrs = multierror.Append(streamErrs, fmt.Errorf("a host's counters did not end within %s after the window", 2*every+max(r.e.ConnectTimeout, time.Second)))
			mu.Unlock()
			break wait
		case <-poll.C:
			if d, _ := r.takeDecision(DecisionAbort); d == DecisionAbort {
				decided = d
				break wait
			}
		}
	}
	cancel()
	<-streams
	mu.Lock()
	defer mu.Unlock()
	for key, t := range tallies {
		host, slot, _ := strings.Cut(key, " ")
		if !slices.Contains(hosts, host) {
			continue
		}
		sum := &newT
		if !canarySlots[slot] {
			if !slices.Contains(r.slots, slot) || !r.sameBackend(host, backends[key], canarySlots, backends) {
				continue // not rolled by this rollout, or behind another backend: no comparison
			}
			sum = &oldT
		}
		sum.Requests += t.total.Requests
		sum.Errors += t.total.Errors
		sum.Servers++
	}
	return newT, oldT, decided, streamErrs.ErrorOrNil()
}

// sameBackend reports whether backend is one of the backends of host's
// canary slots (an agent that reports no backend counts as the same).
func (r *run) sameBackend(host, backend string, canarySlots map[string]bool, backends map[string]string) bool {
	if backend == "" {
		return true
	}
	for slot := range canarySlots {
		if b := backends[canaryKey(host, slot)]; b == "" || b == backend {
			return true
		}
	}
	return false
}
