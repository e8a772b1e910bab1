package agent

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/runtime"
)

func TestCountersStreamsASampleEveryIntervalForTheWindow(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	w.servers["app/srv-app-1"].stat.Counters = runtime.Counters{Responses: 10, Hrsp5xx: 1}
	c, _ := serve(t, a, t.Context())
	stream, err := c.Counters(context.Background(), &agentpb.CountersRequest{
		Interval: durationpb.New(100 * time.Millisecond), Window: durationpb.New(350 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		s, err := stream.Recv()
		if err != nil {
			break
		}
		n++
		if len(s.GetSlots()) != 3 || s.GetSlots()[0].GetResponses() != 10 || s.GetSlots()[0].GetHrsp_5Xx() != 1 {
			t.Fatalf("sample %+v", s)
		}
	}
	if n < 3 || n > 5 {
		t.Fatalf("%d samples in 350ms at 100ms, want 4 or so", n)
	}
}

func TestCountersRefusesAnIntervalOrWindowOutOfBounds(t *testing.T) {
	w := newWorld(t)
	c, _ := serve(t, newTestAgent(t, w, threeSlots(t, w)...), t.Context())
	for _, req := range []*agentpb.CountersRequest{
		{Interval: durationpb.New(time.Millisecond), Window: durationpb.New(time.Second)},
		{Interval: durationpb.New(time.Second)},
		{Interval: durationpb.New(time.Second), Window: durationpb.New(3 * time.Hour)},
	} {
		stream, err := c.Counters(context.Background(), req)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", req, err)
		}
	}
}

func TestPromoteOverGRPCMapsASlotWithoutACanaryToFailedPrecondition(t *testing.T) {
	w := newWorld(t)
	c, _ := serve(t, newTestAgent(t, w, threeSlots(t, w)...), t.Context())
	_, err := c.Promote(context.Background(), &agentpb.PromoteRequest{Slots: []string{"app-1"}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("%v, want FailedPrecondition", err)
	}
	_, err = c.Promote(context.Background(), &agentpb.PromoteRequest{Slots: []string{"nope"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%v, want InvalidArgument", err)
	}
}
