package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
)

// claimedAgent is an agent daemon a fleet rollout claims: Status says so,
// History answers its entries, Redeploy refuses unless it breaks the claim.
type claimedAgent struct {
	agentpb.UnimplementedAgentServer
	entries []agent.HistoryEntry
	asked   *agentpb.HistoryRequest
}

var claimSince = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func (s *claimedAgent) Status(context.Context, *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	f := agent.FenceToPB(agent.Fence{Token: 8, RolloutID: "r8", Holder: "alice@ops", Message: "release 42", Kind: "rollout", Since: claimSince})
	return &agentpb.StatusResponse{Slots: []*agentpb.SlotStatus{{Slot: "web-1"}}, Claim: f,
		ClaimExpires: timestamppb.New(claimSince.Add(time.Hour)), FenceToken: 8}, nil
}

func (s *claimedAgent) History(_ context.Context, req *agentpb.HistoryRequest) (*agentpb.HistoryResponse, error) {
	s.asked = req
	return &agentpb.HistoryResponse{Entries: agent.HistoryToPB(s.entries)}, nil
}

func (s *claimedAgent) Redeploy(req *agentpb.RedeployRequest, stream agentpb.Agent_RedeployServer) error {
	if !req.GetBreakClaim() {
		return status.Error(codes.FailedPrecondition, `host belongs to rollout r8 held by alice@ops since 2026-12-02T09:00:00Z: "release 42"; wait for it to end (haroll rollout lock status), or pass --break-claim`)
	}
	rep := agent.ReportToPB(agent.Report{Image: req.GetImage(), Slots: []agent.SlotReport{{Slot: "web-1", Result: agent.ResultReplaced}}}, nil)
	return stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Report{Report: rep}})
}

// runAgainst runs cmd with args against the agent daemon srv, through its
// socket, and returns its output.
func runAgainst(t *testing.T, srv agentpb.AgentServer, newCmd func() *cobra.Command, args ...string) (string, error) {
	t.Helper()
	sock := serveSocket(t, srv)
	cfg := writeConfig(t, "socket: "+sock+"\nslots:\n  - {name: web-1, backend: app, server: s1, container: c1}\n")
	cmd := newCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--config", cfg}, args...))
	cmd.SetContext(t.Context())
	err := cmd.Execute()
	return out.String(), err
}

func TestStatusSaysWhichRolloutClaimsTheHost(t *testing.T) {
	out, err := runAgainst(t, &claimedAgent{}, newStatus)
	if err != nil {
		t.Fatal(err)
	}
	want := `claimed by rollout r8 (rollout) held by alice@ops since 2026-12-02T09:00:00Z, until 2026-12-02T10:00:00Z: "release 42"; ` +
		"`haroll redeploy` here needs --break-claim (fence token 8)"
	if !strings.Contains(out, want) {
		t.Fatalf("status:\n%s\nwant a line %q", out, want)
	}
}

func TestRedeployOfAClaimedHostNeedsBreakClaim(t *testing.T) {
	_, err := runAgainst(t, &claimedAgent{}, newRedeploy, "--image", "app:v2")
	if err == nil || !strings.HasPrefix(err.Error(), "agent: host belongs to rollout r8 held by alice@ops") {
		t.Fatalf("redeploy of a claimed host: %v", err)
	}
	if out, err := runAgainst(t, &claimedAgent{}, newRedeploy, "--image", "app:v2", "--break-claim"); err != nil || !strings.Contains(out, "replaced") {
		t.Fatalf("--break-claim: %v\n%s", err, out)
	}
}

func TestStatusHistoryPrintsATableOrJSON(t *testing.T) {
	end := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	srv := &claimedAgent{entries: []agent.HistoryEntry{
		{Seq: 2, Slot: "web-1", End: end, Start: end.Add(-3 * time.Second), ImageBefore: "app:v1", ImageAfter: "app:v1", RequestedImage: "app:v3",
			Result: agent.ResultRolledBack, Err: "health gate: timed out", Origin: "redeploy by bob (local)", Total: 3 * time.Second},
		{Seq: 1, Slot: "web-1", End: end.Add(-time.Hour), ImageBefore: "app:v0", ImageAfter: "app:v1", RequestedImage: "app:v1",
			Result: agent.ResultReplaced, RolloutID: "r8", FenceToken: 8, Origin: "rollout by alice@ops (coordinator)", Total: 2 * time.Second},
	}}
	out, err := runAgainst(t, srv, newStatus, "--history", "--slot", "web-1", "--limit", "5")
	if err != nil {
		t.Fatal(err)
	}
	if srv.asked.GetSlot() != "web-1" || srv.asked.GetLimit() != 5 {
		t.Errorf("asked %v", srv.asked)
	}
	for _, want := range []string{
		"TIME", "ROLLOUT", "rolled_back", "app:v1 -> app:v1 (asked app:v3)", "redeploy by bob (local)", "error: health gate: timed out",
		"app:v0 -> app:v1", "r8", "rollout by alice@ops (coordinator)", "2s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("history table lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "rolled_back") > strings.Index(out, "replaced") {
		t.Errorf("not newest first:\n%s", out)
	}
	out, err = runAgainst(t, srv, newStatus, "--history", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got []agent.HistoryEntry
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 || got[1].RolloutID != "r8" || got[0].Seq != 2 {
		t.Fatalf("json %v: %s", err, out)
	}
	if _, err := runAgainst(t, srv, newStatus, "--slot", "web-1"); err == nil {
		t.Error("--slot without --history was accepted")
	}
}
