package rollout

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "unsafe" // go:linkname, below

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/haroll/haroll/agent/agentpb"
)

// grpcMinPingTime is grpc-go's floor under a client's keepalive Time
// (internal.KeepaliveMinPingTime, 10 s), which would make these tests take
// minutes. They run agentpb's keepalive at a twentieth of its values, in the
// same ratios, so the floor is lowered for this test binary; no other test
// asks for a Time under 10 s.
//
//go:linkname grpcMinPingTime google.golang.org/grpc/internal.KeepaliveMinPingTime
var grpcMinPingTime time.Duration

func init() { grpcMinPingTime = 50 * time.Millisecond }

// testKeepalive is agentpb.DefaultKeepalive at a twentieth: the client pings
// after 1 s of silence and gives up 0.5 s later; the agent accepts pings
// 0.75 s apart.
func testKeepalive() agentpb.Keepalive {
	k := agentpb.DefaultKeepalive()
	const scale = 20
	return agentpb.Keepalive{ClientTime: k.ClientTime / scale, ClientTimeout: k.ClientTimeout / scale,
		ServerMinTime: k.ServerMinTime / scale, ServerTime: k.ServerTime / scale, ServerTimeout: k.ServerTimeout / scale}
}

// quietAgent sends one phase event at once, then nothing for silence, then
// its report: a slot whose drain or boot takes long.
type quietAgent struct {
	fakeServer
	silence time.Duration
	// gone, when not nil, is sent the time the agent saw its caller go away.
	gone chan time.Time
}

func (s *quietAgent) Redeploy(req *agentpb.RedeployRequest, stream agentpb.Agent_RedeployServer) error {
	slot := req.GetSlots()[0]
	if err := stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Phase{Phase: &agentpb.PhaseEvent{Slot: slot, Phase: "pull"}}}); err != nil {
		return err
	}
	select {
	case <-time.After(s.silence):
	case <-stream.Context().Done():
		if s.gone != nil {
			s.gone <- time.Now()
		}
		return stream.Context().Err()
	}
	rep := &agentpb.Report{Image: req.GetImage(), Slots: []*agentpb.SlotReport{{Slot: slot, Result: ResultReplaced, Total: durationpb.New(s.silence)}}}
	return stream.Send(&agentpb.RedeployEvent{Kind: &agentpb.RedeployEvent_Report{Report: rep}})
}

// serveWith serves srv with the agent's keepalive k on a loopback port for
// the test.
func serveWith(t *testing.T, srv agentpb.AgentServer, k agentpb.Keepalive) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(k.ServerOptions()...)
	agentpb.RegisterAgentServer(g, srv)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return l.Addr().String()
}

func TestASilentRedeployStreamIsNotCutByTheAgentsPingPolicy(t *testing.T) {
	k := testKeepalive()
	// Five pings' worth of silence: an agent that found them too close
	// would have ended the connection after the fourth (three strikes).
	silence := 5 * k.ClientTime
	redeploy := func(t *testing.T, server agentpb.Keepalive) error {
		addr := serveWith(t, &quietAgent{fakeServer: fakeServer{slots: []string{"a"}}, silence: silence}, server)
		a, err := DialGRPC(grpc.WithTransportCredentials(insecure.NewCredentials()), k.DialOption())(t.Context(), addr)
		if err != nil {
			t.Fatal(err)
		}
		defer a.(*Client).Close()
		_, err = a.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: "app:v2", Slots: []string{"a"}}, nil)
		return err
	}
	t.Run("with the agent's policy", func(t *testing.T) {
		t.Parallel()
		if err := redeploy(t, k); err != nil {
			t.Fatalf("a stream silent for %s (client keepalive %s, agent's MinTime %s): %v", silence, k.ClientTime, k.ServerMinTime, err)
		}
	})
	// The same test fails when the client pings more often than the agent
	// accepts: what it guards against.
	t.Run("with a stricter policy", func(t *testing.T) {
		t.Parallel()
		strict := k
		strict.ServerMinTime = 3 * k.ClientTime / 2
		if err := redeploy(t, strict); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "too_many_pings") {
			t.Fatalf("got %v, want the stream cut with too_many_pings", err)
		}
	})
}

func TestAFlowThatABlackHoleSwallowsFailsTheStepAndIsSeenByTheAgentWithinTheKeepalive(t *testing.T) {
	k := testKeepalive()
	agent := &quietAgent{fakeServer: fakeServer{slots: []string{"a"}}, silence: time.Minute, gone: make(chan time.Time, 1)}
	proxy := newBlackHoleProxy(t, serveWith(t, agent, k))
	var cut time.Time
	e := &Executor{Dial: DialGRPC(grpc.WithTransportCredentials(insecure.NewCredentials()), k.DialOption()), Image: "app:v2",
		ConnectTimeout: 2 * time.Second, StepTimeout: 30 * k.ClientTime,
		Events: func(ev Event) {
			if ev.Kind == EventPhase { // the stream is open: the NAT drops the flow now
				cut = time.Now()
				proxy.swallow()
			}
		}}
	res, err := e.Run(t.Context(), []string{proxy.addr}, nil, Strategy{Batch: Size{count: 1}})
	took := time.Since(cut)
	if cut.IsZero() {
		t.Fatalf("no phase event came through the proxy: %v", err)
	}
	if !errors.Is(err, ErrFailed) || len(res.Hosts) != 1 || len(res.Hosts[0].Slots) != 1 ||
		res.Hosts[0].Slots[0].Result != ResultError || !strings.Contains(res.Hosts[0].Slots[0].Error, ErrUnreachable.Error()) {
		t.Fatalf("got %v, %+v; want the host failed as unreachable", err, res.Hosts)
	}
	bound := k.ClientTime + k.ClientTimeout
	t.Logf("the step failed %s after the flow was cut (client keepalive %s + %s)", took.Round(time.Millisecond), k.ClientTime, k.ClientTimeout)
	if took > bound+time.Second {
		t.Errorf("the step failed %s after the flow was cut, want within %s (+1s): the keepalive did not find the dead flow", took, bound)
	}

	// The agent, for its part, finds its caller gone by its own pings (an
	// image pull, which changed nothing yet, then stops).
	bound = k.ServerTime + k.ServerTimeout
	select {
	case at := <-agent.gone:
		t.Logf("the agent saw its caller go %s after the flow was cut (agent keepalive %s + %s)", at.Sub(cut).Round(time.Millisecond), k.ServerTime, k.ServerTimeout)
		if d := at.Sub(cut); d > bound+time.Second {
			t.Errorf("the agent saw its caller go %s after the cut, want within %s (+1s)", d, bound)
		}
	case <-time.After(bound + 2*time.Second):
		t.Errorf("the agent did not see its caller go within %s (+2s) of the cut", bound)
	}
}

// blackHoleProxy forwards TCP to an upstream until swallow is called; from
// then on it reads and drops everything both ways and keeps every socket
// open, as a NAT that has forgotten the flow does.
type blackHoleProxy struct {
	addr    string
	dropped atomic.Bool
}

func newBlackHoleProxy(t *testing.T, upstream string) *blackHoleProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackHoleProxy{addr: l.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			down, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			go p.pipe(up, down)
			go p.pipe(down, up)
		}
	}()
	return p
}

// swallow stops forwarding: from now on every byte is dropped.
func (p *blackHoleProxy) swallow() { p.dropped.Store(true) }

func (p *blackHoleProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.dropped.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
