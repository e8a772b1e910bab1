package cli

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
)

// socketAgent is the agent daemon as the CLI sees it through its socket:
// Status answers; Redeploy sends one phase event, then refuses, ends the
// stream without a report, or reports.
type socketAgent struct {
	agentpb.UnimplementedAgentServer
	refuse   error
	noReport bool
	report   *agentpb.Report
}

func (s *socketAgent) Status(context.Context, *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	return &agentpb.StatusResponse{Slots: []*agentpb.SlotStatus{{Slot: "web-1"}}}, nil
}

func (s *socketAgent) Redeploy(_ *agentpb.RedeployRequest, stream agentpb.Agent_RedeployServer) error {
	if s.refuse != nil {
		return s.refuse
	}
	ev := agent.EventToPB(agent.Event{Slot: "web-1", Phase: agent.PhaseDrain})
	if err := stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Phase{Phase: ev}}); err != nil {
		return err
	}
	if s.noReport {
		return nil
	}
	return stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Report{Report: s.report}})
}

// serveSocket serves srv on a unix socket for the test and returns its path.
func serveSocket(t *testing.T, srv agentpb.AgentServer) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "haroll")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	agentpb.RegisterAgentServer(g, srv)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return path
}

// redeployThroughTheSocket redeploys through the agent at path as
// `haroll redeploy` does, and returns the phases it saw, the report and the
// error.
func redeployThroughTheSocket(t *testing.T, path string) ([]agent.Phase, agent.Report, error) {
	t.Helper()
	r, ok := dialLocalAgent(t.Context(), path)
	if !ok {
		t.Fatal("the agent on the socket was not found")
	}
	t.Cleanup(r.close)
	var phases []agent.Phase
	rep, err := r.Redeploy(t.Context(), agent.Request{Image: "app:v2"}, func(e agent.Event) { phases = append(phases, e.Phase) })
	return phases, rep, err
}

func TestTheCLIShowsTheAgentsOwnWordsThroughItsSocket(t *testing.T) {
	busy := status.Error(codes.ResourceExhausted, "another replacement is running on this host: held by pid 42")
	_, _, err := redeployThroughTheSocket(t, serveSocket(t, &socketAgent{refuse: busy}))
	if err == nil || err.Error() != "agent: another replacement is running on this host: held by pid 42" {
		t.Errorf("busy: got %v", err)
	}

	_, _, err = redeployThroughTheSocket(t, serveSocket(t, &socketAgent{noReport: true}))
	if err == nil || !strings.HasPrefix(err.Error(), "the agent closed the stream without a report: see its log") {
		t.Errorf("no report: got %v", err)
	}

	failed := agent.ReportToPB(agent.Report{Image: "app:v2", Slots: []agent.SlotReport{{Slot: "web-1", Result: agent.ResultRolledBack}}},
		errors.New("web-1: health gate: timed out"))
	phases, rep, err := redeployThroughTheSocket(t, serveSocket(t, &socketAgent{report: failed}))
	if err == nil || err.Error() != "web-1: health gate: timed out" || len(rep.Slots) != 1 || rep.Slots[0].Result != agent.ResultRolledBack {
		t.Errorf("slot failed: got %+v, %v", rep, err)
	}
	if len(phases) != 1 || phases[0] != agent.PhaseDrain {
		t.Errorf("phases: got %v, want [drain]", phases)
	}

	done := agent.ReportToPB(agent.Report{Image: "app:v2", Slots: []agent.SlotReport{{Slot: "web-1", Result: agent.ResultReplaced}}}, nil)
	if _, rep, err := redeployThroughTheSocket(t, serveSocket(t, &socketAgent{report: done})); err != nil || rep.Slots[0].Result != agent.ResultReplaced {
		t.Errorf("replaced: got %+v, %v", rep, err)
	}
}

func TestNoAgentBehindASocketFileMeansWorkingInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	if _, ok := dialLocalAgent(t.Context(), path); ok {
		t.Fatal("no socket file: found an agent")
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := dialLocalAgent(t.Context(), path); ok {
		t.Fatal("a socket file nobody listens on: found an agent")
	}
}
