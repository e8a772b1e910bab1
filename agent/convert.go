package agent

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haroll/haroll/agent/agentpb"
)

// The conversions between the plain Go types and agentpb, both ways: the
// service sends them, the CLI reads them back from a running agent.

// EventToPB converts an Event for the wire.
func EventToPB(e Event) *agentpb.PhaseEvent {
	return &agentpb.PhaseEvent{Slot: e.Slot, Phase: string(e.Phase), PhaseCode: agentpb.PhaseFromName(string(e.Phase)), Start: timestamppb.New(e.Start),
		Duration: durationpb.New(e.Duration), Detail: e.Detail, Error: e.Err}
}

// EventFromPB converts a wire event back.
func EventFromPB(e *agentpb.PhaseEvent) Event {
	return Event{Slot: e.GetSlot(), Phase: Phase(e.PhaseName()), Start: e.GetStart().AsTime(),
		Duration: e.GetDuration().AsDuration(), Detail: e.GetDetail(), Err: e.GetError()}
}

// ReportToPB converts a Report, and the error Redeploy returned with it.
func ReportToPB(r Report, err error) *agentpb.Report {
	out := &agentpb.Report{Image: r.Image, Total: durationpb.New(r.Total)}
	if err != nil {
		out.Error = err.Error()
	}
	for _, s := range r.Slots {
		phases := make(map[string]*durationpb.Duration, len(s.Phases))
		for p, d := range s.Phases {
			phases[string(p)] = durationpb.New(d)
		}
		out.Slots = append(out.Slots, &agentpb.SlotReport{Slot: s.Slot, Result: string(s.Result), ResultCode: agentpb.SlotResultFromName(string(s.Result)),
			OldContainer: s.OldContainer, NewContainer: s.NewContainer, OldImage: s.OldImage,
			Weight: int32(s.Weight), Phases: phases, Total: durationpb.New(s.Total), Error: s.Err})
	}
	return out
}

// ReportFromPB converts a wire report back; the error text is its second value.
func ReportFromPB(r *agentpb.Report) (Report, string) {
	out := Report{Image: r.GetImage(), Total: r.GetTotal().AsDuration()}
	for _, s := range r.GetSlots() {
		phases := make(map[Phase]time.Duration, len(s.GetPhases()))
		for p, d := range s.GetPhases() {
			phases[Phase(p)] = d.AsDuration()
		}
		out.Slots = append(out.Slots, SlotReport{Slot: s.GetSlot(), Result: Result(s.ResultName()),
			OldContainer: s.GetOldContainer(), NewContainer: s.GetNewContainer(), OldImage: s.GetOldImage(),
			Weight: int(s.GetWeight()), Phases: phases, Total: s.GetTotal().AsDuration(), Err: s.GetError()})
	}
	return out, r.GetError()
}

// StatusToPB converts slot statuses.
func StatusToPB(slots []SlotStatus) []*agentpb.SlotStatus {
	out := make([]*agentpb.SlotStatus, 0, len(slots))
	for _, s := range slots {
		out = append(out, &agentpb.SlotStatus{Slot: s.Slot, Backend: s.Backend, Server: s.Server,
			Container: s.Container, ContainerId: s.ContainerID, Image: s.Image, Running: s.Running,
			DockerHealth: s.Health, HaproxyStatus: s.Status, Weight: int32(s.Weight), Scur: int32(s.Scur),
			Addr: s.Addr, Error: s.Err, Canary: s.Canary, FullWeight: int32(s.FullWeight), Pending: pendingToPB(s.Pending)})
	}
	return out
}

func pendingToPB(p *SlotPending) *agentpb.SlotPending {
	if p == nil {
		return nil
	}
	out := &agentpb.SlotPending{Image: p.Image, Phase: string(p.Phase), PhaseCode: agentpb.PhaseFromName(string(p.Phase)), Started: timestamppb.New(p.Started),
		Proven: p.Proven, Wedged: p.Wedged, Error: p.Error}
	if !p.FailedAt.IsZero() {
		out.FailedAt = timestamppb.New(p.FailedAt)
	}
	return out
}

func pendingFromPB(p *agentpb.SlotPending) *SlotPending {
	if p == nil {
		return nil
	}
	out := &SlotPending{Image: p.GetImage(), Phase: Phase(p.PhaseName()), Started: p.GetStarted().AsTime(),
		Proven: p.GetProven(), Wedged: p.GetWedged(), Error: p.GetError()}
	if p.GetFailedAt() != nil {
		out.FailedAt = p.GetFailedAt().AsTime()
	}
	return out
}

// StatusFromPB converts slot statuses back.
func StatusFromPB(slots []*agentpb.SlotStatus) []SlotStatus {
	out := make([]SlotStatus, 0, len(slots))
	for _, s := range slots {
		out = append(out, SlotStatus{Slot: s.GetSlot(), Backend: s.GetBackend(), Server: s.GetServer(),
			Container: s.GetContainer(), ContainerID: s.GetContainerId(), Image: s.GetImage(),
			Running: s.GetRunning(), Health: s.GetDockerHealth(), Status: s.GetHaproxyStatus(),
			Weight: int(s.GetWeight()), Scur: int(s.GetScur()), Addr: s.GetAddr(), Err: s.GetError(),
			Canary: s.GetCanary(), FullWeight: int(s.GetFullWeight()), Pending: pendingFromPB(s.GetPending())})
	}
	return out
}

// CountersToPB converts one sample of every slot's counters.
func CountersToPB(at time.Time, slots []SlotCounters) *agentpb.CountersSample {
	out := &agentpb.CountersSample{Time: timestamppb.New(at)}
	for _, s := range slots {
		out.Slots = append(out.Slots, &agentpb.SlotCounters{Slot: s.Slot, Backend: s.Backend, Canary: s.Canary, Image: s.Image,
			Responses: s.Responses, Hrsp_5Xx: s.Hrsp5xx, Econ: s.Econ, Eresp: s.Eresp, Weight: int32(s.Weight), Error: s.Err})
	}
	return out
}
