package rollout

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
)

// fleetServer answers the fleet operations as an agent that has seen the
// fence token seen and is claimed by claimedBy (when set).
type fleetServer struct {
	agentpb.UnimplementedAgentServer
	seen      uint64
	claimedBy string
	pulls     []*agentpb.PullProgress // sent in order; an empty list ends the stream
	pullErr   error
	history   []*agentpb.HistoryEntry
	promoted  []*agentpb.PromoteRequest
}

func (s *fleetServer) fenced(f *agentpb.Fence) error {
	if f.GetToken() < s.seen {
		return status.Errorf(codes.Aborted, "fenced: rollout %s (token %d) is older than rollout r9 (token %d, held by alice) this host has seen: its coordinator lost the fleet lock",
			f.GetRolloutId(), f.GetToken(), s.seen)
	}
	return nil
}

func (s *fleetServer) History(_ context.Context, req *agentpb.HistoryRequest) (*agentpb.HistoryResponse, error) {
	var out []*agentpb.HistoryEntry
	for _, e := range s.history {
		if req.GetSlot() == "" || e.GetSlot() == req.GetSlot() {
			out = append(out, e)
		}
	}
	return &agentpb.HistoryResponse{Hostname: "h1", Entries: out}, nil
}

func (s *fleetServer) Pull(req *agentpb.PullRequest, stream agentpb.Agent_PullServer) error {
	if err := s.fenced(req.GetFence()); err != nil {
		return err
	}
	if s.pullErr != nil {
		return s.pullErr
	}
	for _, p := range s.pulls {
		if err := stream.Send(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *fleetServer) Claim(_ context.Context, req *agentpb.ClaimRequest) (*agentpb.ClaimResponse, error) {
	if err := s.fenced(req.GetFence()); err != nil {
		return nil, err
	}
	return &agentpb.ClaimResponse{Claim: req.GetFence(), FenceToken: max(s.seen, req.GetFence().GetToken())}, nil
}

func (s *fleetServer) Promote(_ context.Context, req *agentpb.PromoteRequest) (*agentpb.PromoteResponse, error) {
	if err := s.fenced(req.GetFence()); err != nil {
		return nil, err
	}
	s.promoted = append(s.promoted, req)
	return &agentpb.PromoteResponse{}, nil
}

func (s *fleetServer) Redeploy(req *agentpb.RedeployRequest, _ agentpb.Agent_RedeployServer) error {
	if err := s.fenced(req.GetFence()); err != nil {
		return err
	}
	if req.GetFence() == nil && s.claimedBy != "" && !req.GetBreakClaim() {
		return status.Errorf(codes.FailedPrecondition, "host belongs to rollout %s held by alice since 2026-12-02T09:00:00Z; wait for it to end (haroll rollout lock status), or pass --break-claim", s.claimedBy)
	}
	return status.Error(codes.FailedPrecondition, "preflight failed: slot a: no such image")
}

func TestPullReturnsTheDoneMessageAfterTheProgress(t *testing.T) {
	srv := &fleetServer{pulls: []*agentpb.PullProgress{{Status: "1 of 2", Current: 1, Total: 2}, {Status: "2 of 2", Current: 2, Total: 2}, {Done: true, Digest: "sha256:abc"}}}
	c := dialTest(t, serve(t, srv))
	var seen []string
	done, err := c.Pull(t.Context(), "app:v2", &agentpb.Fence{Token: 3, RolloutId: "r3"}, "prepull", func(p *agentpb.PullProgress) { seen = append(seen, p.GetStatus()) })
	if err != nil || done.GetDigest() != "sha256:abc" || len(seen) != 2 {
		t.Fatalf("pull %v, %v, progress %v", done, err, seen)
	}
	srv.pulls = srv.pulls[:2] // a stream that ends before its done message
	if _, err := c.Pull(t.Context(), "app:v2", nil, "prepull", nil); !errors.Is(err, ErrNoReport) {
		t.Fatalf("a pull without its done message: %v, want ErrNoReport", err)
	}
	srv.pullErr = status.Error(codes.NotFound, "image app:v9: image not found: manifest unknown")
	if _, err := c.Pull(t.Context(), "app:v9", nil, "prepull", nil); status.Code(err) != codes.NotFound {
		t.Fatalf("a missing image: %v, want the agent's NOT_FOUND", err)
	}
}

func TestAStaleFenceIsErrFencedOnEveryFleetCall(t *testing.T) {
	srv := &fleetServer{seen: 9, claimedBy: "r9"}
	c := dialTest(t, serve(t, srv))
	stale := &agentpb.Fence{Token: 8, RolloutId: "r8"}
	if _, err := c.Pull(t.Context(), "app:v2", stale, "prepull", nil); !errors.Is(err, ErrFenced) {
		t.Errorf("pull: %v, want ErrFenced", err)
	}
	if _, err := c.Claim(t.Context(), &agentpb.ClaimRequest{Fence: stale}); !errors.Is(err, ErrFenced) {
		t.Errorf("claim: %v, want ErrFenced", err)
	}
	err := c.PromoteFenced(t.Context(), "rollout", stale)
	if !errors.Is(err, ErrFenced) || status.Code(err) != codes.Aborted {
		t.Errorf("promote: %v, want ErrFenced keeping ABORTED", err)
	}
	if err := c.PromoteFenced(t.Context(), "rollout", &agentpb.Fence{Token: 9, RolloutId: "r9"}); err != nil || len(srv.promoted) != 1 || srv.promoted[0].GetFence().GetRolloutId() != "r9" {
		t.Errorf("promote of the current rollout: %v, %v", err, srv.promoted)
	}
	if resp, err := c.Claim(t.Context(), &agentpb.ClaimRequest{Fence: &agentpb.Fence{Token: 10}}); err != nil || resp.GetFenceToken() != 10 {
		t.Errorf("claim: %v, %v", resp, err)
	}
}

func TestFleetStatusNamesAClaimedHost(t *testing.T) {
	srv := &fleetServer{claimedBy: "r9"}
	c := dialTest(t, serve(t, srv))
	_, err := c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: "app:v2"}, nil)
	err = fleetStatus(status.Convert(err).Err())
	if !errors.Is(err, ErrClaimed) || !errors.Is(err, ErrRefused) {
		t.Fatalf("claimed host: %v, want ErrClaimed and ErrRefused", err)
	}
	_, err = c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: "app:v2", BreakClaim: true}, nil)
	if err = fleetStatus(status.Convert(err).Err()); errors.Is(err, ErrClaimed) || !errors.Is(err, ErrRefused) {
		t.Fatalf("another refusal: %v, want ErrRefused only", err)
	}
}

func TestHistoryPassesTheQueryOn(t *testing.T) {
	srv := &fleetServer{history: []*agentpb.HistoryEntry{{Seq: 2, Slot: "a"}, {Seq: 1, Slot: "b"}}}
	c := dialTest(t, serve(t, srv))
	resp, err := c.History(t.Context(), &agentpb.HistoryRequest{Slot: "b"})
	if err != nil || resp.GetHostname() != "h1" || len(resp.GetEntries()) != 1 || resp.GetEntries()[0].GetSeq() != 1 {
		t.Fatalf("history %v, %v", resp, err)
	}
}
