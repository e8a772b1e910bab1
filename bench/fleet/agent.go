package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
)

// slots are every simulated host's slots, in config order, as in the
// demo's and the integration tests' agents.
var slots = []string{"app-1", "app-2", "app-3"}

// oldImage is what every slot runs before the rollout.
const oldImage = "app:v1"

// slotTimes returns host index's time per slot: uniform in [lo, hi], drawn
// from a generator seeded by (seed, index), so that every build, and every
// child process, sees the same times for the same host.
func slotTimes(seed uint64, index int, lo, hi time.Duration) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, uint64(index)))
	out := make([]time.Duration, len(slots))
	for i := range out {
		out[i] = lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	return out
}

// step is one phase of a simulated slot replacement: it ends at end (a share
// of the slot time) after running for dur (also a share).
type step struct {
	phase    agent.Phase
	end, dur float64
	detail   func(a *fakeAgent, slot int) string
}

// startFirst is the timeline of a start-first slot as a real agent runs it
// when the image is already on the host (no pull event): a preflight, then
// the old container drains while the new one is created, started and booted;
// then HAProxy is pointed at it, the health gate passes, the weight comes
// back and the old container is removed. The phases on the critical path
// (all but the drain, which overlaps create, start and boot) add up to the
// whole slot time. Events are sent in the order the phases end.
var startFirst = []step{
	{agent.PhasePreflight, 0.01, 0.01, func(a *fakeAgent, s int) string {
		return "server app/" + slots[s] + " UP, container " + slots[s] + " running"
	}},
	{agent.PhaseCreate, 0.04, 0.03, func(a *fakeAgent, s int) string { return slots[s] + " " + a.containerID(s, 2) }},
	{agent.PhaseStart, 0.06, 0.02, func(*fakeAgent, int) string { return "" }},
	{agent.PhaseDrain, 0.46, 0.45, func(*fakeAgent, int) string { return "0 sessions left" }},
	{agent.PhaseBoot, 0.56, 0.50, func(a *fakeAgent, s int) string { return a.addr(s, 2) }},
	{agent.PhaseAddress, 0.58, 0.02, func(a *fakeAgent, s int) string { return a.addr(s, 1) + " -> " + a.addr(s, 2) }},
	{agent.PhaseGate, 0.88, 0.30, func(*fakeAgent, int) string { return "L7OK 200 in 1ms" }},
	{agent.PhaseRestore, 0.90, 0.02, func(*fakeAgent, int) string { return "weight 1, state ready" }},
	{agent.PhaseCleanup, 1.00, 0.10, func(a *fakeAgent, s int) string { return a.containerID(s, 1) }},
}

// fakeAgent answers the agent API as a real agent with three start-first
// slots does, with simulated slot times in place of Docker and HAProxy.
type fakeAgent struct {
	agentpb.UnimplementedAgentServer
	index int
	times []time.Duration
	calls *calls

	mu     sync.Mutex
	images []string // per slot
	busy   string
}

func newFakeAgent(index int, times []time.Duration, c *calls) *fakeAgent {
	images := make([]string, len(slots))
	for i := range images {
		images[i] = oldImage
	}
	return &fakeAgent{index: index, times: times, calls: c, images: images}
}

// containerID is a made-up container id for slot s: generation 1 is the
// old container, 2 the new one.
func (a *fakeAgent) containerID(s, gen int) string {
	return fmt.Sprintf("%06x%01d%05x", a.index, s, gen)
}

// addr is a made-up container address for slot s and generation gen.
func (a *fakeAgent) addr(s, gen int) string {
	return fmt.Sprintf("172.%d.%d.%d:%d", 16+gen, (a.index>>8)&0xff, a.index&0xff, 8080+s)
}

// Status reports the three slots, as a real agent does.
func (a *fakeAgent) Status(context.Context, *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := &agentpb.StatusResponse{AgentVersion: "bench", Hostname: fmt.Sprintf("host-%05d", a.index), Busy: a.busy}
	for i, s := range slots {
		resp.Slots = append(resp.Slots, &agentpb.SlotStatus{
			Slot: s, Backend: "app", Server: s, Container: s, ContainerId: a.containerID(i, 1),
			Image: a.images[i], Running: true, DockerHealth: "healthy", HaproxyStatus: "UP",
			Weight: 1, Addr: a.addr(i, 1),
		})
	}
	return resp, nil
}

// Claim takes (or releases) the host for a fleet rollout, as a real agent
// does (there, with an fsync of its fence file: about 0.6 ms).
func (a *fakeAgent) Claim(_ context.Context, req *agentpb.ClaimRequest) (*agentpb.ClaimResponse, error) {
	resp := &agentpb.ClaimResponse{FenceToken: req.GetFence().GetToken()}
	if !req.GetRelease() && !req.GetForceRelease() {
		resp.Claim = req.GetFence()
	}
	return resp, nil
}

// Pull answers the rollout's prepull: the simulated host has the image
// (a real pull's time is the registry's, not the coordinator's).
func (a *fakeAgent) Pull(req *agentpb.PullRequest, stream agentpb.Agent_PullServer) error {
	return stream.Send(&agentpb.PullProgress{Status: "Image is up to date for " + req.GetImage(), Done: true, Already: true, Digest: "sha256:bench"})
}

// Redeploy replaces the requested slots one at a time, streaming each
// phase's event when it ends and, last, the report; a slot already on the
// image is skipped, as a real agent does. It records the call.
func (a *fakeAgent) Redeploy(req *agentpb.RedeployRequest, stream agentpb.Agent_RedeployServer) error {
	arrived := time.Now()
	if req.GetImage() == "" {
		return status.Error(codes.InvalidArgument, "image is required")
	}
	if req.GetCanaryWeightPercent() != 0 {
		return status.Error(codes.InvalidArgument, "canary_weight_percent: the bench's agents run no canary")
	}
	var asked []int
	for _, name := range req.GetSlots() {
		i := slices.Index(slots, name)
		if i < 0 {
			return status.Errorf(codes.InvalidArgument, "unknown slot %q: configured slots are %v", name, slots)
		}
		asked = append(asked, i)
	}
	if len(asked) == 0 {
		for i := range slots {
			asked = append(asked, i)
		}
	}
	a.mu.Lock()
	if a.busy != "" {
		defer a.mu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "host busy: %s", a.busy)
	}
	a.busy = fmt.Sprintf("%s of %s since %s", req.GetOrigin(), req.GetImage(), arrived.Format(time.RFC3339))
	a.mu.Unlock()
	defer func() { a.mu.Lock(); a.busy = ""; a.mu.Unlock() }()

	rep := agent.Report{Image: req.GetImage()}
	var slotDur time.Duration
	for _, s := range asked {
		sr := a.replace(stream, s, req.GetImage(), req.GetForce())
		rep.Slots = append(rep.Slots, sr)
		slotDur += sr.Total
	}
	rep.Total = time.Since(arrived)
	sent := time.Now()
	err := stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Report{Report: agent.ReportToPB(rep, nil)}})
	a.calls.add(call{Index: a.index, Slot: slots[asked[0]], Arrived: arrived, Report: sent, SlotDur: slotDur})
	return err
}

// replace runs slot s's timeline, sending each phase's event as it ends. A
// caller gone away stops the events, not the replacement (as a real agent).
func (a *fakeAgent) replace(stream agentpb.Agent_RedeployServer, s int, image string, force bool) agent.SlotReport {
	begin := time.Now()
	a.mu.Lock()
	old := a.images[s]
	a.mu.Unlock()
	rep := agent.SlotReport{Slot: slots[s], OldContainer: a.containerID(s, 1), OldImage: old, Weight: 1}
	if old == image && !force {
		ev := agent.Event{Slot: slots[s], Phase: agent.PhaseSkip, Start: begin, Detail: "already runs " + image}
		_ = stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Phase{Phase: agent.EventToPB(ev)}})
		rep.Result = agent.ResultSkipped
		return rep
	}
	total := a.times[s]
	rep.Phases = make(map[agent.Phase]time.Duration, len(startFirst))
	gone := false
	for _, st := range startFirst {
		end := begin.Add(time.Duration(st.end * float64(total)))
		time.Sleep(time.Until(end))
		d := time.Duration(st.dur * float64(total))
		rep.Phases[st.phase] = d
		if gone {
			continue
		}
		ev := agent.Event{Slot: slots[s], Phase: st.phase, Start: end.Add(-d), Duration: d, Detail: st.detail(a, s)}
		if err := stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Phase{Phase: agent.EventToPB(ev)}}); err != nil {
			gone = true
		}
	}
	a.mu.Lock()
	a.images[s] = image
	a.mu.Unlock()
	rep.Result = agent.ResultReplaced
	rep.NewContainer = a.containerID(s, 2)
	rep.Total = time.Since(begin)
	return rep
}

// Promote fails as a real agent does when no slot runs a canary: the bench's
// agents never run one.
func (a *fakeAgent) Promote(context.Context, *agentpb.PromoteRequest) (*agentpb.PromoteResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, "no slot runs a canary")
}

// Counters streams every slot's counters (all zero: no traffic is
// simulated) at once, then every interval, and a last sample when the
// window has passed, within the bounds a real agent enforces.
func (a *fakeAgent) Counters(req *agentpb.CountersRequest, stream agentpb.Agent_CountersServer) error {
	every, window := req.GetInterval().AsDuration(), req.GetWindow().AsDuration()
	if every < 100*time.Millisecond || window <= 0 || window > 2*time.Hour {
		return status.Errorf(codes.InvalidArgument, "counters: interval %s, window %s: want an interval of at least 100ms and a window in (0, 2h]", every, window)
	}
	end := time.NewTimer(window)
	defer end.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for last := false; ; {
		sample := make([]agent.SlotCounters, len(slots))
		for i, s := range slots {
			sample[i] = agent.SlotCounters{Slot: s, Backend: "app", Weight: 1}
		}
		if err := stream.Send(agent.CountersToPB(time.Now(), sample)); err != nil {
			return err
		}
		if last {
			return nil
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-end.C:
			last = true
		case <-tick.C:
		}
	}
}
