package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/docker"
)

// The fleet operations of the service: History, Pull and Claim.

// History returns the host's recorded slot results, newest first.
func (s *Service) History(_ context.Context, req *agentpb.HistoryRequest) (*agentpb.HistoryResponse, error) {
	if req.GetLimit() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "history: limit %d: want 0 (every entry kept) or more", req.GetLimit())
	}
	entries, err := s.agent.History(HistoryQuery{Slot: req.GetSlot(), RolloutID: req.GetRolloutId(), Limit: int(req.GetLimit())})
	if err != nil {
		return nil, toStatus(err)
	}
	host, _ := os.Hostname()
	return &agentpb.HistoryResponse{Hostname: host, Entries: HistoryToPB(entries)}, nil
}

// Pull pulls an image into the host's engine, streaming its progress; the
// last message has done set. The pull stops when the caller goes away or
// the agent stops. An image the engine cannot get is NOT_FOUND.
func (s *Service) Pull(req *agentpb.PullRequest, stream agentpb.Agent_PullServer) error {
	if req.GetImage() == "" {
		return status.Error(codes.InvalidArgument, "image is required")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stopWithAgent := context.AfterFunc(s.life, cancel)
	defer stopWithAgent()
	// Progress is sent from the pull's own reporting goroutine, one message
	// at a time, and never after Pull returned: stream sends do not overlap.
	var sendErr error
	got, err := s.agent.Pull(ctx, PullRequest{Image: req.GetImage(), Fence: FenceFromPB(req.GetFence()),
		Origin: originOf(Request{Origin: req.GetOrigin(), Caller: caller(stream.Context())})}, func(p docker.PullProgress) {
		if sendErr == nil {
			sendErr = stream.Send(&agentpb.PullProgress{Status: pullStatusLine(p), Current: p.Downloaded, Total: p.Size})
		}
	})
	if err != nil {
		return pullStatus(err)
	}
	last := &agentpb.PullProgress{Status: pullStatusLine(got.Last), Current: got.Last.Downloaded, Total: got.Last.Size,
		Done: true, Digest: got.ImageID, Already: got.Already}
	if got.Already {
		last.Status = "Image is up to date"
	}
	return stream.Send(last)
}

// pullStatusLine is a PullProgress's status: Docker's word for where the
// pull is, then how far it got ("Downloading: 45.2 MB of 120 MB (3 layers
// done of 7)").
func pullStatusLine(p docker.PullProgress) string {
	word := "Pulling fs layer"
	switch {
	case p.Layers > 0 && p.Done == p.Layers:
		word = "Pull complete"
	case p.Size > 0 && p.Downloaded >= p.Size:
		word = "Extracting"
	case p.Downloaded > 0:
		word = "Downloading"
	}
	return word + ": " + p.String()
}

// pullStatus maps Pull's errors: an image the engine cannot get is
// NOT_FOUND there (a redeploy's preflight reports it as FAILED_PRECONDITION),
// a pull stopped at docker.pull_timeout DEADLINE_EXCEEDED.
func pullStatus(err error) error {
	switch {
	case errors.Is(err, ErrPullTimeout):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, docker.ErrImageNotFound):
		return status.Error(codes.NotFound, err.Error())
	}
	return toStatus(err)
}

// Claim records, renews or ends the host's claim by a fleet rollout.
func (s *Service) Claim(_ context.Context, req *agentpb.ClaimRequest) (*agentpb.ClaimResponse, error) {
	var f Fence
	if pf := FenceFromPB(req.GetFence()); pf != nil {
		f = *pf
	} else {
		f.RolloutID = req.GetFence().GetRolloutId()
	}
	st, err := s.agent.Claim(ClaimRequest{Fence: f, Release: req.GetRelease(), ForceRelease: req.GetForceRelease()})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &agentpb.ClaimResponse{FenceToken: st.Token}
	out.Claim, out.ClaimExpires = ClaimToPB(st.Claim)
	return out, nil
}

// caller says who calls: the name of the client certificate a mutual-TLS
// peer presented (its CommonName, else its first DNS name), "local" over the
// unix socket, else the peer's address.
func caller(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		if name := certName(info.State.PeerCertificates); name != "" {
			return name
		}
	}
	if p.Addr != nil && p.Addr.Network() == "unix" {
		return "local"
	}
	if p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

func certName(chain []*x509.Certificate) string {
	if len(chain) == 0 {
		return ""
	}
	if cn := chain[0].Subject.CommonName; cn != "" {
		return cn
	}
	if len(chain[0].DNSNames) > 0 {
		return chain[0].DNSNames[0]
	}
	return ""
}
