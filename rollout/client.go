package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/haroll/haroll/agent/agentpb"
)

// Client is an Agent over the agent's gRPC API: a thin adapter that reads
// the Redeploy stream and maps gRPC codes back to this package's errors. It
// is the one reader of that stream: the coordinator's, and the haroll CLI's
// through the agent's unix socket.
type Client struct {
	api  agentpb.AgentClient
	conn io.Closer
}

// NewClient wraps api; Close closes conn when it is not nil.
func NewClient(api agentpb.AgentClient, conn io.Closer) *Client {
	return &Client{api: api, conn: conn}
}

// DialGRPC returns a Dial that opens one gRPC connection per host with
// opts (transport credentials at least), after this package's defaults
// (dialOptions: small buffers for thousands of connections). grpc.NewClient
// connects lazily: the first call, under its context's deadline, or Connect
// makes the connection.
//
// Every connection has the keepalive of agentpb.ClientKeepalive (opts may
// override it): an agent that goes silent in the middle of a call, a
// Redeploy stream through a NAT that dropped the flow, fails the call with
// ErrUnreachable within agentpb.ClientKeepaliveTime +
// ClientKeepaliveTimeout, instead of at the step timeout.
func DialGRPC(opts ...grpc.DialOption) Dial {
	opts = append(append(dialOptions(), agentpb.ClientKeepalive()), opts...)
	return func(_ context.Context, host string) (Agent, error) {
		conn, err := grpc.NewClient(host, opts...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", host, ErrUnreachable, err)
		}
		return NewClient(agentpb.NewAgentClient(conn), conn), nil
	}
}

// Close closes the connection.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Status asks for the host's slots. A failure to reach the agent wraps
// ErrUnreachable.
func (c *Client) Status(ctx context.Context) (*agentpb.StatusResponse, error) {
	resp, err := c.api.Status(ctx, &agentpb.StatusRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp, nil
}

// Redeploy runs req on the agent, calls onPhase for every phase event and
// returns the final report. A report whose error is set comes back with an
// error wrapping ErrSlotFailed; a stream that ends without a report wraps
// ErrNoReport; refusals wrap ErrBusy or ErrRefused.
func (c *Client) Redeploy(ctx context.Context, req *agentpb.RedeployRequest, onPhase func(*agentpb.PhaseEvent)) (*agentpb.Report, error) {
	stream, err := c.api.Redeploy(ctx, req)
	if err != nil {
		return nil, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, ErrNoReport
		}
		if err != nil {
			return nil, fromStatus(err)
		}
		if p := ev.GetPhase(); p != nil {
			if onPhase != nil {
				onPhase(p)
			}
			continue
		}
		if r := ev.GetReport(); r != nil {
			if r.GetError() != "" {
				return r, fmt.Errorf("%w: %s", ErrSlotFailed, r.GetError())
			}
			return r, nil
		}
	}
}

// Promote gives the host's canary slots their whole weight back.
func (c *Client) Promote(ctx context.Context, origin string) error {
	if _, err := c.api.Promote(ctx, &agentpb.PromoteRequest{Origin: origin}); err != nil {
		return fromStatus(err)
	}
	return nil
}

// Counters streams the host's counters to onSample until window has passed
// or ctx ends; either is a nil error.
func (c *Client) Counters(ctx context.Context, interval, window time.Duration, onSample func(*agentpb.CountersSample)) error {
	stream, err := c.api.Counters(ctx, &agentpb.CountersRequest{Interval: durationpb.New(interval), Window: durationpb.New(window)})
	if err != nil {
		return fromStatus(err)
	}
	for {
		s, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fromStatus(err)
		}
		onSample(s)
	}
}

// fromStatus maps a gRPC status back to this package's errors, keeping the
// agent's message. The error it returns also keeps the status itself
// (status.FromError finds it), for a caller that shows the agent's words
// alone, as `haroll redeploy` through the agent's socket does.
func fromStatus(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	var kind error
	switch s.Code() {
	case codes.ResourceExhausted:
		kind = ErrBusy
	case codes.InvalidArgument, codes.PermissionDenied, codes.FailedPrecondition:
		kind = ErrRefused
	case codes.Unavailable:
		kind = ErrUnreachable
	case codes.DeadlineExceeded:
		kind = context.DeadlineExceeded
	case codes.Canceled:
		kind = context.Canceled
	}
	if k := fleetKind(s); k != nil {
		kind = k
	}
	return &agentError{kind: kind, status: s}
}

// agentError is a gRPC error of the agent: kind is this package's error for
// its code (nil for a code it has none for), status the agent's own.
type agentError struct {
	kind   error
	status *status.Status
}

// Error reads "<kind>: <the agent's message>", or, without kind, "<code>:
// <message>".
func (e *agentError) Error() string {
	if e.kind == nil {
		return fmt.Sprintf("%s: %s", e.status.Code(), e.status.Message())
	}
	return fmt.Sprintf("%v: %s", e.kind, e.status.Message())
}

// Unwrap returns kind, for errors.Is(err, ErrBusy) and the like.
func (e *agentError) Unwrap() error { return e.kind }

// GRPCStatus returns the agent's status.
func (e *agentError) GRPCStatus() *status.Status { return e.status }
