package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
)

// slots is what redeploy and status need of a host: an in-process
// *agent.Agent, or the running agent daemon through its unix socket.
type slots interface {
	Redeploy(ctx context.Context, req agent.Request, events func(agent.Event)) (agent.Report, error)
	Status(ctx context.Context) ([]agent.SlotStatus, error)
}

// remote drives the agent daemon of this host over its unix socket.
type remote struct {
	client agentpb.AgentClient
	conn   *grpc.ClientConn
}

// dialLocalAgent returns the running agent when its socket answers Status
// within a second, and false when no agent runs (no socket, or nobody
// listening), so the caller can work in-process.
func dialLocalAgent(ctx context.Context, socket string) (*remote, bool) {
	if socket == "" {
		return nil, false
	}
	if _, err := os.Stat(socket); err != nil {
		return nil, false
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, false
	}
	r := &remote{client: agentpb.NewAgentClient(conn), conn: conn}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := r.client.Status(ctx, &agentpb.StatusRequest{}); err != nil {
		conn.Close()
		return nil, false
	}
	return r, true
}

func (r *remote) Status(ctx context.Context) ([]agent.SlotStatus, error) {
	resp, err := r.client.Status(ctx, &agentpb.StatusRequest{})
	if err != nil {
		return nil, rpcError(err)
	}
	return agent.StatusFromPB(resp.GetSlots()), nil
}

// Redeploy asks the agent to replace the slots and follows its events. If
// this process is interrupted, the agent goes on with the replacement once
// a slot is touched; during the image pull, which has changed nothing yet,
// it stops the pull and the request.
func (r *remote) Redeploy(ctx context.Context, req agent.Request, events func(agent.Event)) (agent.Report, error) {
	stream, err := r.client.Redeploy(ctx, &agentpb.RedeployRequest{Image: req.Image, Slots: req.Slots, Force: req.Force, Origin: req.Origin})
	if err != nil {
		return agent.Report{}, rpcError(err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return agent.Report{}, errors.New("the agent closed the stream without a report: see its log (journalctl -u haroll-agent)")
		}
		if err != nil {
			return agent.Report{}, rpcError(err)
		}
		if p := ev.GetPhase(); p != nil {
			events(agent.EventFromPB(p))
		}
		if rep := ev.GetReport(); rep != nil {
			out, msg := agent.ReportFromPB(rep)
			if msg != "" {
				return out, errors.New(msg)
			}
			return out, nil
		}
	}
}

func (r *remote) close() { r.conn.Close() }

// rpcError keeps the agent's message and drops the gRPC wrapping.
func rpcError(err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("agent: %s", s.Message())
	}
	return err
}
