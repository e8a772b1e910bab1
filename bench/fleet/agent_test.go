package main

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/rollout"
)

// serveFake serves a on loopback in plaintext and returns the coordinator's
// client for it.
func serveFake(t *testing.T, a *fakeAgent) *rollout.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	agentpb.RegisterAgentServer(s, a)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := rollout.NewClient(agentpb.NewAgentClient(conn), conn)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAnAgentStreamsAStartFirstSlotsPhasesThenReportsItReplaced(t *testing.T) {
	const slotTime = 80 * time.Millisecond
	recorded := &calls{}
	c := serveFake(t, newFakeAgent(7, []time.Duration{time.Second, slotTime, time.Second}, recorded))
	var phases []string
	rep, err := c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: image, Slots: []string{"app-2"}},
		func(e *agentpb.PhaseEvent) {
			if e.GetSlot() != "app-2" {
				t.Errorf("event of slot %q, want app-2", e.GetSlot())
			}
			phases = append(phases, e.GetPhase())
		})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"preflight", "create", "start", "drain", "boot", "address", "gate", "restore", "cleanup"}
	if !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v (in the order they end)", phases, want)
	}
	got, _ := agent.ReportFromPB(rep)
	if len(got.Slots) != 1 || got.Slots[0].Result != agent.ResultReplaced || got.Slots[0].OldImage != oldImage {
		t.Fatalf("report %+v, want app-2 replaced from %s", got, oldImage)
	}
	sr := got.Slots[0]
	if sr.Total < slotTime {
		t.Errorf("slot total %s, want at least the slot time %s", sr.Total, slotTime)
	}
	var critical time.Duration
	for p, d := range sr.Phases {
		if p != agent.PhaseDrain { // the drain overlaps create, start and boot
			critical += d
		}
	}
	if diff := critical - slotTime; diff < -time.Microsecond || diff > time.Microsecond {
		t.Errorf("phases on the critical path add up to %s, want the slot time %s", critical, slotTime)
	}
	cs := recorded.list()
	if len(cs) != 1 || cs[0].Index != 7 || cs[0].Slot != "app-2" || cs[0].SlotDur != sr.Total || cs[0].Report.Before(cs[0].Arrived.Add(slotTime)) {
		t.Errorf("calls %+v, want one for agent 7, app-2, reported after the slot time", cs)
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, s := range st.GetSlots() {
		images = append(images, s.GetImage())
	}
	if !slices.Equal(images, []string{oldImage, image, oldImage}) || st.GetBusy() != "" {
		t.Errorf("status images %v busy %q, want only app-2 on %s, idle", images, st.GetBusy(), image)
	}
}

func TestAnAgentSkipsASlotAlreadyOnTheImageAndRefusesAnUnknownOne(t *testing.T) {
	a := newFakeAgent(0, []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}, &calls{})
	c := serveFake(t, a)
	ctx := t.Context()
	if _, err := c.Redeploy(ctx, &agentpb.RedeployRequest{Image: image, Slots: []string{"app-1"}}, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Redeploy(ctx, &agentpb.RedeployRequest{Image: image, Slots: []string{"app-1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.GetSlots()[0].GetResult(); r != string(agent.ResultSkipped) {
		t.Errorf("second redeploy: %s, want skipped", r)
	}
	if _, err := c.Redeploy(ctx, &agentpb.RedeployRequest{Image: image, Slots: []string{"app-9"}}, nil); err == nil {
		t.Error("an unknown slot was accepted")
	}
}

func TestSlotTimesAreTheSameForAHostInEveryRunAndWithinTheRange(t *testing.T) {
	lo, hi := 2*time.Second, 5*time.Second
	seen := map[time.Duration]bool{}
	for i := range 200 {
		a, b := slotTimes(1, i, lo, hi), slotTimes(1, i, lo, hi)
		if !slices.Equal(a, b) {
			t.Fatalf("host %d: %v then %v", i, a, b)
		}
		for _, d := range a {
			if d < lo || d > hi {
				t.Fatalf("host %d: slot time %s outside [%s, %s]", i, d, lo, hi)
			}
			seen[d] = true
		}
	}
	if len(seen) < 500 {
		t.Errorf("%d distinct slot times in 600, want them spread", len(seen))
	}
	if slices.Equal(slotTimes(1, 3, lo, hi), slotTimes(2, 3, lo, hi)) {
		t.Error("another seed gave the same times")
	}
	if got := slotTimes(1, 3, lo, lo); !slices.Equal(got, []time.Duration{lo, lo, lo}) {
		t.Errorf("min = max: %v, want that time", got)
	}
}

func TestStatusReportsThreeServingSlotsOfWeightOne(t *testing.T) {
	c := serveFake(t, newFakeAgent(0, []time.Duration{time.Hour, time.Hour, time.Hour}, &calls{}))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.GetSlots()); n != 3 {
		t.Fatalf("%d slots, want 3", n)
	}
	for _, s := range st.GetSlots() {
		if s.GetWeight() != 1 || s.GetBackend() == "" || !s.GetRunning() {
			t.Errorf("slot %+v: want weight 1, a backend, running", s)
		}
	}
}

func TestCountersStreamEverySlotUntilTheWindowAndPromoteFindsNoCanary(t *testing.T) {
	c := serveFake(t, newFakeAgent(0, []time.Duration{time.Second, time.Second, time.Second}, &calls{}))
	var samples int
	err := c.Counters(t.Context(), 100*time.Millisecond, 250*time.Millisecond, func(s *agentpb.CountersSample) {
		samples++
		if n := len(s.GetSlots()); n != 3 {
			t.Errorf("sample of %d slots, want 3", n)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if samples < 2 || samples > 5 {
		t.Errorf("%d samples in a 250ms window at 100ms, want one at once, one per interval and one at the end", samples)
	}
	if err := c.Counters(t.Context(), time.Millisecond, time.Second, func(*agentpb.CountersSample) {}); !errors.Is(err, rollout.ErrRefused) {
		t.Errorf("an interval of 1ms: %v, want a refusal", err)
	}
	if err := c.Promote(t.Context(), "test"); !errors.Is(err, rollout.ErrRefused) {
		t.Errorf("promote: %v, want a refusal (no canary)", err)
	}
	_, err = c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: image, CanaryWeightPercent: 10}, nil)
	if !errors.Is(err, rollout.ErrRefused) {
		t.Errorf("a canary redeploy: %v, want a refusal", err)
	}
}
