package agent

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/docker"
)

// Service is the gRPC adapter over an Agent: it converts messages and maps
// errors to codes; the behaviour is Agent's.
type Service struct {
	agentpb.UnimplementedAgentServer
	agent   *Agent
	version string
	// life is the daemon's lifetime: replacements run under it, not under
	// the caller's stream, so a lost caller does not stop a slot half-way.
	life context.Context
	wg   sync.WaitGroup
}

// NewService serves a over gRPC. Replacements run until they finish or life
// ends (which rolls the slot in progress back and starts no further slot).
func NewService(life context.Context, a *Agent, version string) *Service {
	return &Service{agent: a, version: version, life: life}
}

// Wait blocks until every replacement started through the service ended.
func (s *Service) Wait() { s.wg.Wait() }

// Status reports the host's slots.
func (s *Service) Status(ctx context.Context, _ *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	slots, err := s.agent.Status(ctx)
	if err != nil && len(slots) == 0 {
		return nil, toStatus(err)
	}
	host, _ := os.Hostname()
	out := &agentpb.StatusResponse{AgentVersion: s.version, Hostname: host, Busy: s.agent.Busy(), Slots: StatusToPB(slots)}
	fs, err := s.agent.FenceState()
	if err != nil {
		return nil, toStatus(err)
	}
	out.Claim, out.ClaimExpires = ClaimToPB(fs.Claim)
	out.FenceToken = fs.Token
	return out, nil
}

// Redeploy runs a replacement and streams its events, then its report. Errors
// that stop the request before any slot is touched come back as the RPC's
// status; a slot that fails is reported in the final Report. A caller that
// goes away stops the image pull (nothing is changed yet), not a slot's
// replacement.
func (s *Service) Redeploy(req *agentpb.RedeployRequest, stream agentpb.Agent_RedeployServer) error {
	if req.GetImage() == "" {
		return status.Error(codes.InvalidArgument, "image is required")
	}
	events := make(chan *agentpb.PhaseEvent, 64)
	type outcome struct {
		rep Report
		err error
	}
	done := make(chan outcome, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// prefer_start_first is not read: the slots' strategies already
		// give what it asks for (agent.proto).
		rep, err := s.agent.Redeploy(s.life, Request{Image: req.GetImage(), Slots: req.GetSlots(),
			Force: req.GetForce(), Origin: req.GetOrigin(), CanaryPercent: int(req.GetCanaryWeightPercent()),
			CallerGone: stream.Context().Done(), Fence: FenceFromPB(req.GetFence()), BreakClaim: req.GetBreakClaim(),
			MaxSurge: int(req.GetMaxSurge()), Caller: caller(stream.Context())}, func(e Event) {
			select {
			case events <- EventToPB(e):
			default: // a slow or gone caller never holds a slot up
			}
		})
		close(events)
		done <- outcome{rep, err}
	}()
	callerGone := false
	for e := range events {
		if callerGone {
			continue
		}
		if err := stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Phase{Phase: e}}); err != nil {
			callerGone = true
		}
	}
	out := <-done
	if out.err != nil && len(out.rep.Slots) == 0 {
		return toStatus(out.err)
	}
	return stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Report{Report: ReportToPB(out.rep, out.err)}})
}

// Promote gives canary slots their whole weight back. It runs under the
// daemon's lifetime, not the call's: a blue/green slot's promotion retires
// its old side (a drain of up to drain.timeout), which a caller that goes
// away or times out must not cut off part-way. Such a caller gets its
// context's error while the promotion goes on.
func (s *Service) Promote(ctx context.Context, req *agentpb.PromoteRequest) (*agentpb.PromoteResponse, error) {
	type outcome struct {
		done []SlotWeight
		err  error
	}
	res := make(chan outcome, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		done, err := s.agent.Promote(s.life, req.GetSlots(), req.GetOrigin(), FenceFromPB(req.GetFence()))
		res <- outcome{done, err}
	}()
	var done []SlotWeight
	select {
	case out := <-res:
		if out.err != nil {
			return nil, toStatus(out.err)
		}
		done = out.done
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	out := &agentpb.PromoteResponse{}
	for _, w := range done {
		out.Slots = append(out.Slots, &agentpb.SlotWeight{Slot: w.Slot, Weight: int32(w.Weight)})
	}
	return out, nil
}

// Counters bounds: a sample at most every minCountersInterval, a stream of
// at most maxCountersWindow.
const (
	minCountersInterval = 100 * time.Millisecond
	maxCountersWindow   = 2 * time.Hour
)

// Counters streams a sample of every slot's counters at once, then every
// interval, and a last one when the window has passed, unless the caller
// went away first.
func (s *Service) Counters(req *agentpb.CountersRequest, stream agentpb.Agent_CountersServer) error {
	every, window := req.GetInterval().AsDuration(), req.GetWindow().AsDuration()
	if every < minCountersInterval || window <= 0 || window > maxCountersWindow {
		return status.Errorf(codes.InvalidArgument, "counters: interval %s, window %s: want an interval of at least %s and a window in (0, %s]",
			every, window, minCountersInterval, maxCountersWindow)
	}
	ctx := stream.Context()
	end := time.NewTimer(window)
	defer end.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for last := false; ; {
		// Each read has its own deadline: a hung HAProxy delays a sample,
		// it does not hold the stream past its window.
		rctx, cancel := context.WithTimeout(ctx, every)
		slots, err := s.agent.Counters(rctx)
		cancel()
		if err != nil {
			return toStatus(err)
		}
		if err := stream.Send(CountersToPB(time.Now(), slots)); err != nil {
			return err
		}
		if last {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-end.C:
			last = true
		case <-tick.C:
		}
	}
}

// toStatus maps the agent's errors onto gRPC codes, once, here.
func toStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ErrPullCancelled): // a preflight failure, but cut short
		code = codes.Canceled
	case errors.Is(err, ErrFenced):
		code = codes.Aborted
	case errors.Is(err, ErrBusy):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUnknownSlot), errors.Is(err, ErrInvalidImage), errors.Is(err, ErrInvalidCanary), errors.Is(err, ErrInvalidFence):
		code = codes.InvalidArgument
	case errors.Is(err, ErrImageNotAllowed):
		code = codes.PermissionDenied
	case errors.Is(err, ErrPreflight), errors.Is(err, docker.ErrImageNotFound), errors.Is(err, ErrNoCanary), errors.Is(err, ErrWedged), errors.Is(err, ErrClaimed):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
