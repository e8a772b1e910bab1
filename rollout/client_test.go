package rollout

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
)

// dialTest opens a Client to addr and closes it with the test.
func dialTest(t *testing.T, addr string) *Client {
	t.Helper()
	a, err := DialGRPC(grpc.WithTransportCredentials(insecure.NewCredentials()))(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	c := a.(*Client)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedeployPassesEveryPhaseOnAndReturnsTheReport(t *testing.T) {
	c := dialTest(t, serve(t, &fakeServer{slots: []string{"a"}, delay: time.Millisecond}))
	var phases []string
	rep, err := c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: "app:v2", Slots: []string{"a", "b"}},
		func(p *agentpb.PhaseEvent) { phases = append(phases, p.GetSlot()+"/"+p.GetPhase()) })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(phases, " ") != "a/drain b/drain" || len(rep.GetSlots()) != 2 || rep.GetSlots()[1].GetResult() != ResultReplaced {
		t.Fatalf("phases %v, report %v", phases, rep)
	}
}

func TestAReportWithAnErrorIsASlotFailure(t *testing.T) {
	c := dialTest(t, serve(t, &fakeServer{fail: true}))
	rep, err := c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: "app:v2", Slots: []string{"a"}}, nil)
	if !errors.Is(err, ErrSlotFailed) || !strings.Contains(err.Error(), "health gate") || rep.GetSlots()[0].GetResult() != ResultRolledBack {
		t.Fatalf("got %v, %v", rep, err)
	}
}

func TestAStreamThatEndsWithoutAReportIsAnError(t *testing.T) {
	c := dialTest(t, serve(t, &fakeServer{noReport: true}))
	if _, err := c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: "app:v2", Slots: []string{"a"}}, nil); !errors.Is(err, ErrNoReport) {
		t.Fatalf("got %v, want ErrNoReport", err)
	}
}

func TestRefusalsMapBackToErrors(t *testing.T) {
	for _, tc := range []struct {
		status error
		want   error
	}{
		{errBusyStatus, ErrBusy},
		{status.Error(codes.PermissionDenied, "image not allowed"), ErrRefused},
		{status.Error(codes.FailedPrecondition, "preflight: backend keeps 0 servers"), ErrRefused},
	} {
		c := dialTest(t, serve(t, &fakeServer{refuse: tc.status}))
		_, err := c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: "app:v2"}, nil)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), status.Convert(tc.status).Message()) {
			t.Errorf("%v: got %v, want %v with the agent's message", tc.status, err, tc.want)
		}
	}
}

func TestAnAgentThatIsNotThereIsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := dialTest(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := c.Status(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
}

func TestAnAgentLostMidStepIsReportedFailedForThatHost(t *testing.T) {
	srv := &fakeServer{slots: []string{"a"}, delay: 10 * time.Second}
	addr, stop, err := listen(srv)
	if err != nil {
		t.Fatal(err)
	}
	e := &Executor{Dial: DialGRPC(grpc.WithTransportCredentials(insecure.NewCredentials())), Image: "app:v2",
		ConnectTimeout: 2 * time.Second, StepTimeout: 20 * time.Second,
		Events: func(ev Event) {
			if ev.Kind == EventStepStart {
				time.AfterFunc(100*time.Millisecond, stop)
			}
		}}
	start := time.Now()
	res, err := e.Run(t.Context(), []string{addr}, nil, Strategy{Batch: Size{count: 1}})
	if !errors.Is(err, ErrFailed) || res.Hosts[0].Slots[0].Result != ResultError {
		t.Fatalf("got %v, %+v", err, res.Hosts)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s: a lost agent must fail its host at once", d)
	}
}

func TestAReportFromAnAgentBeforeTheEnumsReadsAsOneFromAnAgentOfToday(t *testing.T) {
	// phasesAndResults rolls one host whose agent fills the fields wire
	// says, and returns what the coordinator made of them.
	phasesAndResults := func(wire wireFields, fail bool) (phases []string, slots []SlotResult) {
		t.Helper()
		srv := &fakeServer{slots: []string{"a", "b"}, wire: wire, fail: fail}
		e := &Executor{Dial: DialGRPC(grpc.WithTransportCredentials(insecure.NewCredentials())), Image: "app:v2",
			ConnectTimeout: 2 * time.Second, StepTimeout: 5 * time.Second,
			Events: func(ev Event) {
				if ev.Kind == EventPhase {
					phases = append(phases, ev.Slot+"/"+ev.Phase)
				}
			}}
		res, _ := e.Run(t.Context(), []string{serve(t, srv)}, nil, Strategy{Batch: Size{count: 1}})
		if len(res.Hosts) != 1 {
			t.Fatalf("wire %d: got %+v", wire, res)
		}
		for _, s := range res.Hosts[0].Slots {
			s.Duration, s.Phases = 0, nil // timings differ from run to run
			slots = append(slots, s)
		}
		return phases, slots
	}
	for _, fail := range []bool{false, true} {
		oldPhases, oldSlots := phasesAndResults(wireText, fail)
		want := ResultReplaced
		if fail {
			want = ResultRolledBack
		}
		if len(oldPhases) == 0 || oldPhases[0] != "a/drain" || len(oldSlots) == 0 || oldSlots[0].Result != want {
			t.Fatalf("an agent before the enums (fail %v): phases %v, slots %+v", fail, oldPhases, oldSlots)
		}
		for _, wire := range []wireFields{wireBoth, wireCodes} {
			phases, slots := phasesAndResults(wire, fail)
			if !slices.Equal(phases, oldPhases) || !slices.EqualFunc(slots, oldSlots, func(a, b SlotResult) bool { return reflect.DeepEqual(a, b) }) {
				t.Errorf("wire %d (fail %v): phases %v, slots %+v; an agent before the enums: %v, %+v", wire, fail, phases, slots, oldPhases, oldSlots)
			}
		}
	}
}
