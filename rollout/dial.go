package rollout

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// dialOptions are the options DialGRPC gives every agent connection before
// the caller's (which win).
//
// The read buffer is off (gRPC's default: 32 KiB per connection for its
// whole life, sized for bulk streams). The agent sends a status, a few phase
// events and a report of a few hundred bytes each, and under TLS the
// connection already holds a whole decrypted record, so the framer reads
// from it without a system call; without TLS (loopback only) a frame costs
// two small reads. Measured with mutual TLS (BenchmarkConnectionMemory): an
// idle connection holds about 50 KiB instead of 74. The write buffer is
// gRPC's default, shared: taken from a pool only while a write is flushed.
// Window sizes allocate nothing, so they stay as they are.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithReadBufferSize(0),
	}
}

// connState is what Connect needs of a *grpc.ClientConn.
type connState interface {
	Connect()
	GetState() connectivity.State
	WaitForStateChange(ctx context.Context, source connectivity.State) bool
}

// Connect establishes the connection (TCP, then the TLS handshake) now,
// rather than on the first call, and returns once it is ready. The executor
// dials the next batch this way while the current batch's last step runs.
// A connection that fails, or is not ready when ctx ends, is an error
// wrapping ErrUnreachable. A Client over something other than a gRPC
// connection has nothing to establish.
func (c *Client) Connect(ctx context.Context) error {
	cc, ok := c.conn.(connState)
	if !ok {
		return nil
	}
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("%w: the connection to the agent failed (gRPC state %s): check that the agent runs and that its certificate is trusted", ErrUnreachable, s)
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("%w: not connected within the connect timeout (gRPC state %s): %w", ErrUnreachable, s, context.Cause(ctx))
		}
	}
}
