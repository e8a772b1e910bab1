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
			Addr: s.Addr, Error: s.Err, Canary: s.Canary, FullWeight: int32(s.FullWeight), Pending: pendingToPB(s.Pending),
			AltServer: s.AltServer, LiveServer: s.LiveServer, CanaryBeside: s.CanaryBeside})
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
			Canary: s.GetCanary(), FullWeight: int(s.GetFullWeight()), Pending: pendingFromPB(s.GetPending()),
			AltServer: s.GetAltServer(), LiveServer: s.GetLiveServer(), CanaryBeside: s.GetCanaryBeside()})
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

// FenceFromPB converts a request's fence; nil for none (unset, or token 0:
// a person's request).
func FenceFromPB(f *agentpb.Fence) *Fence {
	if f.GetToken() == 0 {
		return nil
	}
	out := &Fence{Token: f.GetToken(), RolloutID: f.GetRolloutId(), Holder: f.GetHolder(), Message: f.GetMessage(),
		ClaimTTL: f.GetClaimTtl().AsDuration(), Kind: f.GetKind()}
	if f.GetSince() != nil {
		out.Since = f.GetSince().AsTime()
	}
	return out
}

// FenceToPB converts a fence for the wire.
func FenceToPB(f Fence) *agentpb.Fence {
	out := &agentpb.Fence{Token: f.Token, RolloutId: f.RolloutID, Holder: f.Holder, Message: f.Message, Kind: f.Kind}
	if !f.Since.IsZero() {
		out.Since = timestamppb.New(f.Since)
	}
	if f.ClaimTTL != 0 {
		out.ClaimTtl = durationpb.New(f.ClaimTTL)
	}
	return out
}

// ClaimToPB converts a host's claim: the fence and when it expires, both
// nil when there is none.
func ClaimToPB(c *Claim) (*agentpb.Fence, *timestamppb.Timestamp) {
	if c == nil {
		return nil, nil
	}
	return FenceToPB(c.Fence), timestamppb.New(c.Expires)
}

// ClaimFromPB converts a claim back; nil when fence is.
func ClaimFromPB(fence *agentpb.Fence, expires *timestamppb.Timestamp) *Claim {
	if fence == nil {
		return nil
	}
	f := FenceFromPB(fence)
	if f == nil {
		f = &Fence{RolloutID: fence.GetRolloutId(), Holder: fence.GetHolder(), Message: fence.GetMessage(), Kind: fence.GetKind()}
	}
	return &Claim{Fence: *f, Expires: expires.AsTime()}
}

// HistoryToPB converts history entries.
func HistoryToPB(entries []HistoryEntry) []*agentpb.HistoryEntry {
	out := make([]*agentpb.HistoryEntry, 0, len(entries))
	for _, e := range entries {
		phases := make(map[string]*durationpb.Duration, len(e.Phases))
		for p, d := range e.Phases {
			phases[string(p)] = durationpb.New(d)
		}
		out = append(out, &agentpb.HistoryEntry{Seq: e.Seq, Slot: e.Slot, Start: timestamppb.New(e.Start), End: timestamppb.New(e.End),
			ImageBefore: e.ImageBefore, DigestBefore: e.DigestBefore, ImageAfter: e.ImageAfter, DigestAfter: e.DigestAfter,
			Origin: e.Origin, RolloutId: e.RolloutID, FenceToken: e.FenceToken, Kind: e.Kind,
			ResultCode: agentpb.SlotResultFromName(string(e.Result)), Result: string(e.Result), Error: e.Err,
			Phases: phases, Total: durationpb.New(e.Total), RequestedImage: e.RequestedImage, Strategy: e.Strategy})
	}
	return out
}

// HistoryFromPB converts history entries back.
func HistoryFromPB(entries []*agentpb.HistoryEntry) []HistoryEntry {
	out := make([]HistoryEntry, 0, len(entries))
	for _, e := range entries {
		var phases map[Phase]time.Duration
		if len(e.GetPhases()) > 0 {
			phases = make(map[Phase]time.Duration, len(e.GetPhases()))
			for p, d := range e.GetPhases() {
				phases[Phase(p)] = d.AsDuration()
			}
		}
		result := e.GetResultCode().Name()
		if result == "" {
			result = e.GetResult()
		}
		out = append(out, HistoryEntry{Seq: e.GetSeq(), Slot: e.GetSlot(), Start: e.GetStart().AsTime(), End: e.GetEnd().AsTime(),
			ImageBefore: e.GetImageBefore(), DigestBefore: e.GetDigestBefore(), ImageAfter: e.GetImageAfter(), DigestAfter: e.GetDigestAfter(),
			Origin: e.GetOrigin(), RolloutID: e.GetRolloutId(), FenceToken: e.GetFenceToken(), Kind: e.GetKind(),
			Result: Result(result), Err: e.GetError(), Strategy: e.GetStrategy(), Phases: phases,
			Total: e.GetTotal().AsDuration(), RequestedImage: e.GetRequestedImage()})
	}
	return out
}
