package rollout

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/haroll/haroll/agent/agentpb"
)

// fakeFleet is a set of hand-written fake agents that records what the
// executor asked and how many replacements ran at once.
type fakeFleet struct {
	mu        sync.Mutex
	hosts     map[string]*fakeAgent
	calls     []call // Redeploy calls, in the order they started
	active    int
	maxActive int
	overlaps  []string // hosts that were asked for two slots at once
	dials     map[string]int
	closed    map[string]int
	onCall    func(call)
}

type call struct{ host, slot string }

// fakeAgent is one host. Its zero behaviour replaces every slot after delay.
type fakeAgent struct {
	fleet       *fakeFleet
	host        string
	slots       []string
	busy        string
	unreachable bool            // Status fails at once
	blackhole   bool            // Status waits for its deadline
	fail        map[string]bool // slot -> rolled back
	hang        map[string]bool // slot -> never reports
	delay       time.Duration
	active      int
}

func newFleet(t *testing.T, n int, slots ...string) *fakeFleet {
	t.Helper()
	f := &fakeFleet{hosts: map[string]*fakeAgent{}, dials: map[string]int{}, closed: map[string]int{}}
	for _, h := range hostNames(n) {
		f.hosts[h] = &fakeAgent{fleet: f, host: h, slots: slots, fail: map[string]bool{}, hang: map[string]bool{}, delay: 2 * time.Millisecond}
	}
	return f
}

func (f *fakeFleet) host(h string) *fakeAgent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hosts[h]
}

func (f *fakeFleet) dial(_ context.Context, h string) (Agent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials[h]++
	a, ok := f.hosts[h]
	if !ok {
		return nil, fmt.Errorf("no such host %s", h)
	}
	return &fakeConn{a}, nil
}

func (f *fakeFleet) callsTo(h string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var slots []string
	for _, c := range f.calls {
		if c.host == h {
			slots = append(slots, c.slot)
		}
	}
	return slots
}

func (f *fakeFleet) allCalls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// fakeConn is what dial returns: the agent plus a Close the fleet counts.
type fakeConn struct{ *fakeAgent }

func (c *fakeConn) Close() error {
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	c.fleet.closed[c.host]++
	return nil
}

func (a *fakeAgent) Status(ctx context.Context) (*agentpb.StatusResponse, error) {
	a.fleet.mu.Lock()
	unreachable, blackhole := a.unreachable, a.blackhole
	resp := &agentpb.StatusResponse{Hostname: a.host, Busy: a.busy}
	for _, s := range a.slots {
		resp.Slots = append(resp.Slots, &agentpb.SlotStatus{Slot: s})
	}
	a.fleet.mu.Unlock()
	if blackhole {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if unreachable {
		return nil, fmt.Errorf("%w: connection refused", ErrUnreachable)
	}
	return resp, nil
}

func (a *fakeAgent) Redeploy(ctx context.Context, req *agentpb.RedeployRequest, onPhase func(*agentpb.PhaseEvent)) (*agentpb.Report, error) {
	if len(req.GetSlots()) != 1 {
		return nil, fmt.Errorf("want one slot per call, got %v", req.GetSlots())
	}
	slot := req.GetSlots()[0]
	f := a.fleet
	f.mu.Lock()
	f.calls = append(f.calls, call{a.host, slot})
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	a.active++
	if a.active > 1 {
		f.overlaps = append(f.overlaps, a.host)
	}
	fail, hang, delay, onCall := a.fail[slot], a.hang[slot], a.delay, f.onCall
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		a.active--
		f.mu.Unlock()
	}()
	if onCall != nil {
		onCall(call{a.host, slot})
	}
	onPhase(&agentpb.PhaseEvent{Slot: slot, Phase: "drain", Duration: durationpb.New(delay)})
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if fail {
		return &agentpb.Report{Image: req.GetImage(), Error: slot + ": health gate timed out",
				Slots: []*agentpb.SlotReport{{Slot: slot, Result: ResultRolledBack, Error: "health gate timed out"}}},
			fmt.Errorf("%w: %s: health gate timed out", ErrSlotFailed, slot)
	}
	return &agentpb.Report{Image: req.GetImage(), Slots: []*agentpb.SlotReport{{Slot: slot, Result: ResultReplaced, Total: durationpb.New(delay)}}}, nil
}

// executor returns an Executor over f with short timeouts.
func (f *fakeFleet) executor() *Executor {
	return &Executor{Dial: f.dial, Image: "app:v2", ConnectTimeout: time.Second, StepTimeout: 5 * time.Second}
}

// recorder collects events; the executor sends them one at a time, but the
// test reads them from its own goroutine.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds(k EventKind) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func mustStrategy(t *testing.T, batch string) Strategy {
	t.Helper()
	return Strategy{Batch: mustSize(t, batch)}
}

func hostResult(t *testing.T, res Result, h string) HostResult {
	t.Helper()
	for _, hr := range res.Hosts {
		if hr.Host == h {
			return hr
		}
	}
	t.Fatalf("no result for host %s in %+v", h, res.Hosts)
	return HostResult{}
}
