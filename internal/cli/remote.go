package cli

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/agent/daemon"
	"github.com/haroll/haroll/rollout"
)

// slots is what redeploy and status need of a host: an in-process
// *agent.Agent, or the running agent daemon through its unix socket.
type slots interface {
	Redeploy(ctx context.Context, req agent.Request, events func(agent.Event)) (agent.Report, error)
	Status(ctx context.Context) ([]agent.SlotStatus, error)
	// FenceState: the fleet rollout that claims the host, if any, and the
	// highest fence token it has seen.
	FenceState(ctx context.Context) (agent.FenceState, error)
	// History: the host's recorded slot results, newest first.
	History(ctx context.Context, q agent.HistoryQuery) ([]agent.HistoryEntry, error)
}

// remote drives the agent daemon of this host over its unix socket, through
// the coordinator's client (one reader of the Redeploy stream); it maps that
// client's errors to the words this CLI has always shown.
type remote struct {
	client *rollout.Client
	// status is the agent's last Status answer, which carries its claim.
	status *agentpb.StatusResponse
}

// dialLocalAgent returns the running agent when its socket answers (see
// daemon.DialLocal), and false when no agent runs, so the caller can work
// in-process.
func dialLocalAgent(ctx context.Context, socket string) (*remote, bool) {
	conn, ok := daemon.DialLocal(ctx, socket)
	if !ok {
		return nil, false
	}
	return &remote{client: rollout.NewClient(agentpb.NewAgentClient(conn), conn)}, true
}

func (r *remote) Status(ctx context.Context) ([]agent.SlotStatus, error) {
	resp, err := r.client.Status(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	r.status = resp
	return agent.StatusFromPB(resp.GetSlots()), nil
}

// FenceState is the claim of the last Status answer, or of a new one.
func (r *remote) FenceState(ctx context.Context) (agent.FenceState, error) {
	if r.status == nil {
		if _, err := r.Status(ctx); err != nil {
			return agent.FenceState{}, err
		}
	}
	return agent.FenceState{Token: r.status.GetFenceToken(), Claim: agent.ClaimFromPB(r.status.GetClaim(), r.status.GetClaimExpires())}, nil
}

func (r *remote) History(ctx context.Context, q agent.HistoryQuery) ([]agent.HistoryEntry, error) {
	resp, err := r.client.History(ctx, &agentpb.HistoryRequest{Slot: q.Slot, RolloutId: q.RolloutID, Limit: int32(q.Limit)})
	if err != nil {
		return nil, rpcError(err)
	}
	return agent.HistoryFromPB(resp.GetEntries()), nil
}

// Redeploy asks the agent to replace the slots and follows its events. If
// this process is interrupted, the agent goes on with the replacement once
// a slot is touched; during the image pull, which has changed nothing yet,
// it stops the pull and the request.
func (r *remote) Redeploy(ctx context.Context, req agent.Request, events func(agent.Event)) (agent.Report, error) {
	rep, err := r.client.Redeploy(ctx, &agentpb.RedeployRequest{Image: req.Image, Slots: req.Slots, Force: req.Force, Origin: req.Origin,
		BreakClaim: req.BreakClaim, MaxSurge: int32(req.MaxSurge)},
		func(p *agentpb.PhaseEvent) { events(agent.EventFromPB(p)) })
	switch {
	case rep != nil:
		// A report, with its error when a slot failed: the agent's own words.
		out, msg := agent.ReportFromPB(rep)
		if msg != "" {
			return out, errors.New(msg)
		}
		return out, nil
	case errors.Is(err, rollout.ErrNoReport):
		return agent.Report{}, errors.New("the agent closed the stream without a report: see its log (journalctl -u haroll-agent)")
	default:
		return agent.Report{}, rpcError(err)
	}
}

func (r *remote) close() { r.client.Close() }

// rpcError keeps the agent's message and drops the gRPC wrapping.
func rpcError(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return fmt.Errorf("agent: %s", se.GRPCStatus().Message())
	}
	return err
}
