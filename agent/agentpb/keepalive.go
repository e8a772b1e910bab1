package agentpb

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// The HTTP/2 keepalive of a coordinator's connection to an agent: both sides
// take their settings from here, so that the pings a coordinator sends are
// always ones the agent accepts. Without them a Redeploy stream that is
// silent for minutes (a long drain, a slow boot) over a NAT or stateful
// firewall that drops idle flows would hang until the step timeout: the
// coordinator would never learn that the agent is gone.
const (
	// ClientKeepaliveTime: a coordinator pings an agent after this long
	// without a frame from it, while a call is open. At least
	// ServerKeepaliveMinTime, or the agent answers with GOAWAY
	// too_many_pings; well under the idle timeouts of NATs and stateful
	// firewalls (AWS NAT gateway: 350 s; Azure's load balancer and NAT
	// gateway: 4 min by default; some home and office routers: 60 s).
	ClientKeepaliveTime = 20 * time.Second
	// ClientKeepaliveTimeout: how long a coordinator waits for the ack of
	// its ping before it closes the connection; the open calls then fail
	// with Unavailable (rollout.ErrUnreachable). A silent agent is so found
	// within ClientKeepaliveTime + ClientKeepaliveTimeout.
	ClientKeepaliveTimeout = 10 * time.Second
	// ServerKeepaliveMinTime: an agent accepts pings this far apart, with
	// or without an open call (three closer ones end the connection with
	// GOAWAY too_many_pings). Under ClientKeepaliveTime, with room for
	// scheduling jitter.
	ServerKeepaliveMinTime = 15 * time.Second
	// ServerKeepaliveTime: an agent pings a client after this long without
	// a frame from it, so it drops connections of coordinators that are
	// gone.
	ServerKeepaliveTime = 60 * time.Second
	// ServerKeepaliveTimeout: how long an agent waits for the ack of its
	// ping before it closes the connection. A replacement in progress goes
	// on: the agent never stops one because its caller went away.
	ServerKeepaliveTimeout = 20 * time.Second
)

// Keepalive is one set of the settings above. Only tests use another than
// DefaultKeepalive (shorter, in the same ratios).
type Keepalive struct {
	ClientTime, ClientTimeout                time.Duration
	ServerMinTime, ServerTime, ServerTimeout time.Duration
}

// DefaultKeepalive is the constants above.
func DefaultKeepalive() Keepalive {
	return Keepalive{ClientTime: ClientKeepaliveTime, ClientTimeout: ClientKeepaliveTimeout,
		ServerMinTime: ServerKeepaliveMinTime, ServerTime: ServerKeepaliveTime, ServerTimeout: ServerKeepaliveTimeout}
}

// DialOption is a coordinator's side: pings only while a call is open (an
// idle connection is closed by its owner, not kept alive).
func (k Keepalive) DialOption() grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: k.ClientTime, Timeout: k.ClientTimeout, PermitWithoutStream: false})
}

// ServerOptions are an agent's side: the pings it accepts, and its own.
func (k Keepalive) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: k.ServerMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: k.ServerTime, Timeout: k.ServerTimeout}),
	}
}

// ClientKeepalive is DefaultKeepalive's DialOption.
func ClientKeepalive() grpc.DialOption { return DefaultKeepalive().DialOption() }

// ServerKeepalive is DefaultKeepalive's ServerOptions.
func ServerKeepalive() []grpc.ServerOption { return DefaultKeepalive().ServerOptions() }
