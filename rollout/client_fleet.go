package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
)

// The agent calls of fleet operations: History, Pull, Claim and a fenced
// Promote. Their errors go through fromStatus and then fleetStatus, which
// names the refusals that only fleet rollouts meet.

var (
	// ErrFenced: the agent has seen a later acquisition of the fleet lock
	// than the request's fence (gRPC ABORTED): this coordinator lost its
	// lock and must stop changing hosts.
	ErrFenced = errors.New("fenced by a later rollout")
	// ErrClaimed: a request without a fence on a host a fleet rollout
	// claims (FAILED_PRECONDITION "host belongs to rollout ..."); it is
	// also ErrRefused.
	ErrClaimed = fmt.Errorf("%w: host claimed by a fleet rollout", ErrRefused)
)

// claimedPrefix starts the agent's message of a claimed host.
const claimedPrefix = "host belongs to rollout"

// fleetKind is this package's error for an agent status that fromStatus
// has no specific one for: ErrFenced, ErrClaimed; nil otherwise.
func fleetKind(s *status.Status) error {
	switch {
	case s.Code() == codes.Aborted:
		return ErrFenced
	case s.Code() == codes.FailedPrecondition && strings.HasPrefix(s.Message(), claimedPrefix):
		return ErrClaimed
	}
	return nil
}

// fleetStatus is fromStatus with ErrFenced and ErrClaimed: err, a gRPC
// error, mapped to this package's errors, the agent's status kept.
func fleetStatus(err error) error {
	err = fromStatus(err)
	var ae *agentError
	if errors.As(err, &ae) {
		if k := fleetKind(ae.status); k != nil {
			ae.kind = k
		}
	}
	return err
}

// History returns the host's recorded slot results, newest first.
func (c *Client) History(ctx context.Context, req *agentpb.HistoryRequest) (*agentpb.HistoryResponse, error) {
	resp, err := c.api.History(ctx, req)
	if err != nil {
		return nil, fleetStatus(err)
	}
	return resp, nil
}

// Pull has the agent pull image into its host's engine, touching no slot,
// calls onProgress (when not nil) with every progress message, and returns
// the last one (done set: Digest is the image's ID, Already says the host
// had it). Errors wrap ErrFenced, ErrRefused (a bad or disallowed image),
// ErrUnreachable; an image the engine cannot get keeps the agent's NOT_FOUND
// status (status.Code(err) == codes.NotFound); a stream that ends without a
// done message wraps ErrNoReport.
func (c *Client) Pull(ctx context.Context, image string, fence *agentpb.Fence, origin string, onProgress func(*agentpb.PullProgress)) (*agentpb.PullProgress, error) {
	stream, err := c.api.Pull(ctx, &agentpb.PullRequest{Image: image, Fence: fence, Origin: origin})
	if err != nil {
		return nil, fleetStatus(err)
	}
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("pull of %s: %w", image, ErrNoReport)
		}
		if err != nil {
			return nil, fleetStatus(err)
		}
		if p.GetDone() {
			return p, nil
		}
		if onProgress != nil {
			onProgress(p)
		}
	}
}

// Claim records, renews or releases the host's claim by a fleet rollout
// (req.Fence); errors wrap ErrFenced when the host has seen a later one.
func (c *Client) Claim(ctx context.Context, req *agentpb.ClaimRequest) (*agentpb.ClaimResponse, error) {
	resp, err := c.api.Claim(ctx, req)
	if err != nil {
		return nil, fleetStatus(err)
	}
	return resp, nil
}

// PromoteFenced is Promote for a fleet rollout: the agent checks fence
// first (ErrFenced).
func (c *Client) PromoteFenced(ctx context.Context, origin string, fence *agentpb.Fence) error {
	if _, err := c.api.Promote(ctx, &agentpb.PromoteRequest{Origin: origin, Fence: fence}); err != nil {
		return fleetStatus(err)
	}
	return nil
}
