package rollout

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haroll/haroll/agent/agentpb"
)

// fakeServer is an agent's gRPC side, hand-written: every slot takes delay,
// streams one phase event and a report. refuse and noReport break it.
type fakeServer struct {
	agentpb.UnimplementedAgentServer
	slots    []string
	delay    time.Duration
	refuse   error // returned by Redeploy before anything is sent
	noReport bool  // end the stream after the phase events
	fail     bool  // report the slot rolled back
	// wire says which of a phase's and a result's fields are set, as the
	// agent of a haroll version does: the zero value sends the text fields
	// only (before the enums), wireBoth both (an agent of today), wireCodes
	// the enums only.
	wire wireFields
}

// wireFields: which fields an agent fills, text or enum or both.
type wireFields int

const (
	wireText wireFields = iota
	wireBoth
	wireCodes
)

// phaseEvent is the event of phase as an agent with fields w sends it.
func (w wireFields) phaseEvent(e *agentpb.PhaseEvent, phase string) *agentpb.PhaseEvent {
	if w != wireCodes {
		e.Phase = phase
	}
	if w != wireText {
		e.PhaseCode = agentpb.PhaseFromName(phase)
	}
	return e
}

// setResult sets r's result as an agent with fields w does.
func (w wireFields) setResult(r *agentpb.SlotReport, result string) {
	r.Result, r.ResultCode = "", agentpb.SlotResult_SLOT_RESULT_UNSPECIFIED
	if w != wireCodes {
		r.Result = result
	}
	if w != wireText {
		r.ResultCode = agentpb.SlotResultFromName(result)
	}
}

func (s *fakeServer) Status(context.Context, *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	resp := &agentpb.StatusResponse{AgentVersion: "test", Hostname: "fake"}
	for _, n := range s.slots {
		resp.Slots = append(resp.Slots, &agentpb.SlotStatus{Slot: n, Running: true})
	}
	return resp, nil
}

func (s *fakeServer) Redeploy(req *agentpb.RedeployRequest, stream agentpb.Agent_RedeployServer) error {
	if s.refuse != nil {
		return s.refuse
	}
	rep := &agentpb.Report{Image: req.GetImage()}
	start := time.Now()
	for _, slot := range req.GetSlots() {
		t0 := time.Now()
		select {
		case <-time.After(s.delay):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
		d := durationpb.New(time.Since(t0))
		if err := stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Phase{Phase: s.wire.phaseEvent(&agentpb.PhaseEvent{
			Slot: slot, Start: timestamppb.New(t0), Duration: d, Detail: "scur 0, qcur 0"}, "drain")}}); err != nil {
			return err
		}
		sr := &agentpb.SlotReport{Slot: slot, Phases: map[string]*durationpb.Duration{"drain": d}, Total: d}
		s.wire.setResult(sr, ResultReplaced)
		if s.fail {
			s.wire.setResult(sr, ResultRolledBack)
			sr.Error = "health gate: timed out"
			rep.Error = slot + ": health gate: timed out"
		}
		rep.Slots = append(rep.Slots, sr)
	}
	if s.noReport {
		return nil
	}
	rep.Total = durationpb.New(time.Since(start))
	return stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Report{Report: rep}})
}

// listen serves srv on a fresh loopback port, with opts, until stop is
// called.
func listen(srv agentpb.AgentServer, opts ...grpc.ServerOption) (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	g := grpc.NewServer(opts...)
	agentpb.RegisterAgentServer(g, srv)
	go func() { _ = g.Serve(l) }()
	return l.Addr().String(), g.Stop, nil
}

// serve serves srv for the test's duration.
func serve(t testing.TB, srv agentpb.AgentServer) string {
	t.Helper()
	addr, stop, err := listen(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

var errBusyStatus = status.Error(codes.ResourceExhausted, "another replacement is running on this host: held by pid 42")
