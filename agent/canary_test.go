package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/haroll/haroll/runtime"
)

func TestCanaryWeightIsAShareRoundedUpAndNeverMoreTrafficThanTheServerHad(t *testing.T) {
	for _, c := range []struct{ weight, pct, want int }{
		{7, 10, 1}, {100, 10, 10}, {256, 10, 26}, {3, 50, 2}, {1, 1, 1}, {10, 99, 10},
		{0, 10, 0}, {0, 99, 0}, // a drained server stays drained
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
	done, err := a.Promote(ctx, nil, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0] != (SlotWeight{Slot: "app-1", Weight: 7}) {
		t.Fatalf("promoted %+v", done)
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 7 {
		t.Fatalf("after promote weight %d, want 7", got)
	}
	if _, err := a.Promote(ctx, []string{"app-1"}, "test", nil); !errors.Is(err, ErrNoCanary) {
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

func TestACanaryThatWouldBeTheWholeWeightIsRefusedNamingTheSlotItsWeightAndWhatToChange(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 1), w.addSlot("app-2", 3))
	for _, c := range []struct {
		slot string
		pct  int
		want string
	}{
		{"app-1", 10, "slot app-1: weight 1 at 10% is a canary weight of 1, the server's whole weight"},
		{"app-2", 70, "slot app-2: weight 3 at 70% is a canary weight of 3, the server's whole weight"},
	} {
		_, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{c.slot}, CanaryPercent: c.pct}, nil)
		if !errors.Is(err, ErrInvalidCanary) || !errors.Is(err, ErrPreflight) {
			t.Fatalf("%s at %d%%: %v, want ErrInvalidCanary in the preflight", c.slot, c.pct, err)
		}
		for _, part := range []string{c.want, "raise the server's weight", "--canary-weight 100%"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("%s at %d%%: %q does not say %q", c.slot, c.pct, err, part)
			}
		}
	}
	if m := w.mutations(); len(m) != 0 {
		t.Fatalf("a refused canary touched HAProxy or Docker: %v", m)
	}
	// A share below the whole weight, however rounded, runs.
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-2"}, CanaryPercent: 10}, nil); err != nil {
		t.Fatal(err)
	}
	if got := w.servers["app/srv-app-2"].stat.Weight; got != 1 {
		t.Fatalf("canary weight %d, want 1 of 3", got)
	}
}

func TestADrainedServerReplacedAsACanaryGetsNoTraffic(t *testing.T) {
	w := newWorld(t)
	slots := threeSlots(t, w)
	w.servers["app/srv-app-1"].stat.Weight = 0 // the operator drained it
	a := newTestAgent(t, w, slots...)
	var details []string
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-1"}, CanaryPercent: 10}, func(e Event) {
		if e.Phase == PhaseRestore {
			details = append(details, e.Detail)
		}
	})
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("%+v, %v", rep, err)
	}
	for _, m := range w.mutations() {
		if strings.HasPrefix(m, "SetWeight app/srv-app-1 ") && m != "SetWeight app/srv-app-1 0" {
			t.Errorf("the drained server was given traffic: %s", m)
		}
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 0 {
		t.Fatalf("weight %d, want the 0 the operator set", got)
	}
	if len(details) != 1 || !strings.Contains(details[0], "weight 0") || !strings.Contains(details[0], "no traffic") {
		t.Errorf("restore detail %q: want it to say the canary stays at weight 0 and gets no traffic", details)
	}
	// Nothing to give back: no canary is recorded, and the coordinator's
	// promote leaves the server as the operator set it.
	if c, _ := a.canaries(); len(c) != 0 {
		t.Errorf("canary records %+v, want none for a server at weight 0", c)
	}
	w.servers["app/srv-app-1"].stat.Weight = 5 // the operator gives it traffic again
	if done, err := a.Promote(context.Background(), nil, "test", nil); err != nil || len(done) != 0 {
		t.Fatalf("promote: %+v, %v", done, err)
	}
	if got := w.servers["app/srv-app-1"].stat.Weight; got != 5 {
		t.Fatalf("weight %d after the promotion, want the operator's 5", got)
	}
}
