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
		if err := stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Phase{Phase: &agentpb.PhaseEvent{
			Slot: slot, Phase: "drain", Start: timestamppb.New(t0), Duration: d, Detail: "scur 0, qcur 0"}}}); err != nil {
			return err
		}
		sr := &agentpb.SlotReport{Slot: slot, Result: ResultReplaced, Phases: map[string]*durationpb.Duration{"drain": d}, Total: d}
		if s.fail {
			sr.Result, sr.Error = ResultRolledBack, "health gate: timed out"
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

// listen serves srv on a fresh loopback port until stop is called.
func listen(srv agentpb.AgentServer) (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	g := grpc.NewServer()
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
