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
	// earlyDeadline: a hanging agent answers DeadlineExceeded just before
	// the step's deadline, as gRPC's server side may (set before a run);
	// earlyCancel: Canceled instead, as an agent that saw its caller go
	// while it pulled answers ("image pull cancelled").
	earlyDeadline, earlyCancel bool
	mu                         sync.Mutex
	hosts                      map[string]*fakeAgent
	calls                      []call // Redeploy calls, in the order they started
	active                     int
	maxActive                  int
	overlaps                   []string // hosts that were asked for two slots at once
	dials                      map[string]int
	closed                     map[string]int
	// open: connections dialled and not closed, per host and in all;
	// maxOpen the most at once; connects: Connect calls per host;
	// closedTwice: hosts a connection of which was closed twice.
	open        map[string]int
	openAll     int
	maxOpen     int
	connects    map[string]int
	closedTwice []string
	onCall      func(call)
	// errorRate is the share of requests an image's servers fail, in the
	// counters every agent reports; promotes counts Promote calls per host.
	errorRate map[string]float64
	promotes  map[string]int
}

type call struct{ host, slot string }

// fakeAgent is one host. Its zero behaviour replaces every slot after delay.
type fakeAgent struct {
	fleet       *fakeFleet
	host        string
	slots       []string
	busy        string
	unreachable bool // Status fails at once
	blackhole   bool // Status waits for its deadline
	// refuseConnect: Connect fails (the preflight's Status does not)
	refuseConnect bool
	// refuseConnects: the next this many Connects fail (a blip).
	refuseConnects int
	fail           map[string]bool // slot -> rolled back
	hang           map[string]bool // slot -> never reports
	delay          time.Duration
	active         int
	// images: what each slot runs ("app:v1" until replaced); canary: the
	// weight share a canary slot runs at; served: requests per slot.
	images map[string]string
	canary map[string]int32
	served map[string]*agentpb.SlotCounters
	// weights asked for, per slot, in order
	weights map[string][]int32
	// linger: slot -> how long the agent takes to replace it on the next
	// call, whatever becomes of the call (a step timeout): meanwhile it holds the host
	// lock, Status says busy and a Redeploy is refused with ErrBusy.
	linger  map[string]time.Duration
	holding string // what holds the host lock after its call ended
	// serverWeight: slot -> the HAProxy weight Status reports (0 when unset)
	serverWeight map[string]int32
	// promoteErr: what Promote fails with (nil: it succeeds)
	promoteErr error
}

func newFleet(t *testing.T, n int, slots ...string) *fakeFleet {
	t.Helper()
	f := &fakeFleet{hosts: map[string]*fakeAgent{}, dials: map[string]int{}, closed: map[string]int{},
		open: map[string]int{}, connects: map[string]int{},
		errorRate: map[string]float64{}, promotes: map[string]int{}}
	for _, h := range hostNames(n) {
		f.hosts[h] = &fakeAgent{fleet: f, host: h, slots: slots, fail: map[string]bool{}, hang: map[string]bool{}, delay: 2 * time.Millisecond,
			images: map[string]string{}, canary: map[string]int32{}, served: map[string]*agentpb.SlotCounters{}, weights: map[string][]int32{},
			linger: map[string]time.Duration{}, serverWeight: map[string]int32{}}
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
	f.open[h]++
	f.openAll++
	f.maxOpen = max(f.maxOpen, f.openAll)
	return &fakeConn{fakeAgent: a}, nil
}

// openNow is how many connections are open, in all and to h.
func (f *fakeFleet) openNow(h string) (all, host int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.openAll, f.open[h]
}

// dialsOf is how many times h was dialled, and its transport established.
func (f *fakeFleet) dialsOf(h string) (dials, connects int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dials[h], f.connects[h]
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

// fakeConn is what dial returns: the agent plus a Close and a Connect the
// fleet counts. A second Close of the same connection is an error.
type fakeConn struct {
	*fakeAgent
	closed bool
}

func (c *fakeConn) Close() error {
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	if c.closed {
		c.fleet.closedTwice = append(c.fleet.closedTwice, c.host)
		return fmt.Errorf("host %s: connection closed twice", c.host)
	}
	c.closed = true
	c.fleet.closed[c.host]++
	c.fleet.open[c.host]--
	c.fleet.openAll--
	return nil
}

// Connect fails when the agent's refuseConnect is set, as a handshake with
// a host gone since the preflight does.
func (c *fakeConn) Connect(ctx context.Context) error {
	c.fleet.mu.Lock()
	defer c.fleet.mu.Unlock()
	c.fleet.connects[c.host]++
	if c.refuseConnect {
		return fmt.Errorf("%w: connection refused", ErrUnreachable)
	}
	if c.refuseConnects > 0 {
		c.refuseConnects--
		return fmt.Errorf("%w: connection refused (a blip)", ErrUnreachable)
	}
	return ctx.Err()
}

func (a *fakeAgent) Status(ctx context.Context) (*agentpb.StatusResponse, error) {
	a.fleet.mu.Lock()
	unreachable, blackhole := a.unreachable, a.blackhole
	resp := &agentpb.StatusResponse{Hostname: a.host, Busy: a.busy}
	if a.holding != "" {
		resp.Busy = a.holding
	}
	for _, s := range a.slots {
		resp.Slots = append(resp.Slots, &agentpb.SlotStatus{Slot: s, Image: a.imageOf(s), Weight: a.serverWeight[s]})
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
	if a.holding != "" {
		f.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrBusy, a.holding)
	}
	f.calls = append(f.calls, call{a.host, slot})
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	a.active++
	if a.active > 1 {
		f.overlaps = append(f.overlaps, a.host)
	}
	fail, hang, delay, onCall := a.fail[slot], a.hang[slot], a.delay, f.onCall
	linger, lingers := a.linger[slot]
	delete(a.linger, slot) // the next call is quick
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
		// The agent's end of the deadline (gRPC's grpc-timeout) may answer
		// DeadlineExceeded a moment before the coordinator's own fires.
		if d, ok := ctx.Deadline(); ok && (a.fleet.earlyDeadline || a.fleet.earlyCancel) {
			select {
			case <-time.After(time.Until(d) - 20*time.Millisecond):
				if a.fleet.earlyCancel {
					return nil, fmt.Errorf("%w: image pull cancelled after 1s: the caller went away", context.Canceled)
				}
				return nil, fmt.Errorf("%w: stream terminated by RST_STREAM with error code: CANCEL", context.DeadlineExceeded)
			case <-ctx.Done():
			}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if lingers {
		return a.lingerOn(ctx, req, slot, linger, fail)
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
	f.mu.Lock()
	old := a.replaced(slot, req)
	f.mu.Unlock()
	return &agentpb.Report{Image: req.GetImage(), Slots: []*agentpb.SlotReport{{Slot: slot, Result: ResultReplaced, OldImage: old, Total: durationpb.New(delay)}}}, nil
}

// replaced records slot as running req's image and returns what it ran;
// the fleet's lock is held.
func (a *fakeAgent) replaced(slot string, req *agentpb.RedeployRequest) (old string) {
	old = a.imageOf(slot)
	a.images[slot] = req.GetImage()
	if pct := req.GetCanaryWeightPercent(); pct > 0 {
		a.canary[slot] = pct
	} else {
		delete(a.canary, slot)
	}
	a.weights[slot] = append(a.weights[slot], req.GetCanaryWeightPercent())
	return old
}

// lingerOn replaces slot in d, as an agent does, holding the host lock
// until then even when ctx ends first (the coordinator gave up on the
// call): the slot is then replaced, or rolled back when fail.
func (a *fakeAgent) lingerOn(ctx context.Context, req *agentpb.RedeployRequest, slot string, d time.Duration, fail bool) (*agentpb.Report, error) {
	f := a.fleet
	f.mu.Lock()
	a.holding = fmt.Sprintf("redeploy of %s (slot %s)", req.GetImage(), slot)
	f.mu.Unlock()
	done := make(chan *agentpb.Report, 1)
	go func() {
		time.Sleep(d)
		f.mu.Lock()
		defer f.mu.Unlock()
		a.holding = ""
		if fail {
			done <- &agentpb.Report{Image: req.GetImage(), Slots: []*agentpb.SlotReport{{Slot: slot, Result: ResultRolledBack, Error: "health gate timed out"}}}
			return
		}
		old := a.replaced(slot, req)
		done <- &agentpb.Report{Image: req.GetImage(), Slots: []*agentpb.SlotReport{{Slot: slot, Result: ResultReplaced, OldImage: old}}}
	}()
	select {
	case rep := <-done:
		return rep, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *fakeAgent) imageOf(slot string) string {
	if im, ok := a.images[slot]; ok {
		return im
	}
	return "app:v1"
}

func (a *fakeAgent) Promote(ctx context.Context, origin string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.fleet.mu.Lock()
	defer a.fleet.mu.Unlock()
	if a.promoteErr != nil {
		return a.promoteErr
	}
	a.fleet.promotes[a.host]++
	clear(a.canary)
	return nil
}

// Counters serves 100 requests per slot per interval, failing the share
// errorRate says for the slot's image, and ends with a sample when the
// window has passed, as the agent does.
func (a *fakeAgent) Counters(ctx context.Context, interval, window time.Duration, onSample func(*agentpb.CountersSample)) error {
	end := time.After(window)
	t := time.NewTicker(interval)
	defer t.Stop()
	for last := false; ; {
		a.fleet.mu.Lock()
		sample := &agentpb.CountersSample{}
		for _, s := range a.slots {
			c := a.served[s]
			if c == nil {
				c = &agentpb.SlotCounters{Slot: s}
				a.served[s] = c
			}
			c.Responses += 100
			c.Hrsp_5Xx += int64(100 * a.fleet.errorRate[a.imageOf(s)])
			_, canary := a.canary[s]
			sample.Slots = append(sample.Slots, &agentpb.SlotCounters{Slot: s, Canary: canary, Responses: c.Responses, Hrsp_5Xx: c.Hrsp_5Xx})
		}
		a.fleet.mu.Unlock()
		onSample(sample)
		if last {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-end:
			last = true
		case <-t.C:
		}
	}
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
