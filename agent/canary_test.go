package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/haroll/haroll/runtime"
)

func TestCanaryWeightIsAShareRoundedUpAndNeverZero(t *testing.T) {
	for _, c := range []struct{ weight, pct, want int }{
		{7, 10, 1}, {100, 10, 10}, {256, 10, 26}, {3, 50, 2}, {1, 1, 1}, {0, 10, 1}, {10, 99, 10},
	} {
		if got := CanaryWeight(c.weight, c.pct); got != c.want {
			t.Errorf("CanaryWeight(%d, %d) = %d, want %d", c.weight, c.pct, got, c.want)
		}
	}
}

func TestACanaryRedeployGivesAShareOfTheWeightUntilPromoted(t *testing.T) {
	w := newWorld(t)
	slots := threeSlots(t, w)
	a := newTestAgent(t, w, slots...)
	ctx := context.Background()
	if _, err := a.Redeploy(ctx, Request{Image: "app:v2", Slots: []string{"app-1"}, CanaryPercent: 10}, nil); err != nil {
		t.Fatal(err)
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 1 {
		t.Fatalf("canary weight %d, want 1 (10%% of 7, rounded up)", got)
	}
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st[0].Canary || st[0].FullWeight != 7 || st[1].Canary {
		t.Fatalf("status: %+v / %+v: want app-1 a canary of weight 7, app-2 none", st[0], st[1])
	}
	counters, err := a.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !counters[0].Canary || counters[0].Image != "app:v2" || counters[1].Canary {
		t.Fatalf("counters: %+v", counters)
	}
	done, err := a.Promote(ctx, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0] != (SlotWeight{Slot: "app-1", Weight: 7}) {
		t.Fatalf("promoted %+v", done)
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 7 {
		t.Fatalf("after promote weight %d, want 7", got)
	}
	if _, err := a.Promote(ctx, []string{"app-1"}, "test"); !errors.Is(err, ErrNoCanary) {
		t.Fatalf("promoting again: %v, want ErrNoCanary", err)
	}
}

func TestRedeployingACanaryGivesTheSlotItsWholeWeightBack(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	ctx := context.Background()
	if _, err := a.Redeploy(ctx, Request{Image: "app:v2", Slots: []string{"app-1"}, CanaryPercent: 50}, nil); err != nil {
		t.Fatal(err)
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 4 {
		t.Fatalf("canary weight %d, want 4", got)
	}
	// Rolling the canary back is a redeploy of the old image.
	rep, err := a.Redeploy(ctx, Request{Image: "app:v1", Slots: []string{"app-1"}}, nil)
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v, %v", rep, err)
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 7 {
		t.Fatalf("weight %d after the canary was replaced, want the whole 7", got)
	}
	if c, _ := a.canaries(); len(c) != 0 {
		t.Fatalf("canary records left: %+v", c)
	}
}

func TestACanaryThatFailsItsGateIsRolledBackAtItsFormerWeight(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	w.images["app:broken"] = "sha256:broken"
	w.broken["sha256:broken"] = true
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:broken", Slots: []string{"app-2"}, CanaryPercent: 10}, nil)
	if err == nil || rep.Slots[0].Result != ResultRolledBack {
		t.Fatalf("%+v, %v: want rolled back", rep, err)
	}
	if got := w.servers["app/srv-app-2"].stat.Weight; got != 3 {
		t.Fatalf("weight %d, want 3", got)
	}
	if c, _ := a.canaries(); len(c) != 0 {
		t.Fatalf("a failed canary is recorded: %+v", c)
	}
}

func TestACrashAfterTheCanaryGateIsFinishedForwardAtTheCanaryWeight(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	w.crashBefore = "SetWeight app/srv-app-1 1"
	func() {
		defer func() {
			if r := recover(); r != errCrash {
				t.Fatalf("no crash: %v", r)
			}
		}()
		_, _ = a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-1"}, CanaryPercent: 10}, nil)
	}()
	w.crashBefore = ""
	if _, err := a.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 1 {
		t.Fatalf("weight %d after recovery, want the canary's 1", got)
	}
	if c, _ := a.canaries(); c["app-1"].FullWeight != 7 {
		t.Fatalf("canary record %+v, want full weight 7", c)
	}
}

func TestABadCanaryShareIsRefusedBeforeAnythingIsTouched(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	for _, pct := range []int{-1, 100, 250} {
		if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2", CanaryPercent: pct}, nil); !errors.Is(err, ErrInvalidCanary) {
			t.Errorf("%d%%: %v, want ErrInvalidCanary", pct, err)
		}
	}
	if m := w.mutations(); len(m) != 0 {
		t.Fatalf("mutations: %v", m)
	}
}

func TestCountersReadEachSlotsTraffic(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, threeSlots(t, w)...)
	w.servers["app/srv-app-2"].stat.Counters = runtime.Counters{Responses: 100, Hrsp5xx: 4, Econ: 1}
	got, err := a.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1].Counters != (runtime.Counters{Responses: 100, Hrsp5xx: 4, Econ: 1}) || got[1].Weight != 3 {
		t.Fatalf("%+v", got)
	}
}
