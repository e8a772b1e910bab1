package live

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/rollout"
)

// quickAgent replaces a slot in a few milliseconds, going through drain,
// boot and gate, or rolls it back when its host fails.
type quickAgent struct {
	host string
	fail bool
}

func (a quickAgent) Status(context.Context) (*agentpb.StatusResponse, error) {
	resp := &agentpb.StatusResponse{Hostname: a.host}
	for _, s := range []string{"web", "api"} {
		resp.Slots = append(resp.Slots, &agentpb.SlotStatus{Slot: s, Image: "app:v1"})
	}
	return resp, nil
}

func (a quickAgent) Redeploy(ctx context.Context, req *agentpb.RedeployRequest, onPhase func(*agentpb.PhaseEvent)) (*agentpb.Report, error) {
	slot := req.GetSlots()[0]
	for _, p := range []string{"drain", "boot", "gate"} {
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		onPhase(&agentpb.PhaseEvent{Slot: slot, Phase: p, Duration: durationpb.New(time.Millisecond)})
	}
	if a.fail {
		return &agentpb.Report{Image: req.GetImage(), Error: slot + ": health gate timed out",
				Slots: []*agentpb.SlotReport{{Slot: slot, Result: rollout.ResultRolledBack, Error: "health gate timed out"}}},
			fmt.Errorf("%w: %s: health gate timed out", rollout.ErrSlotFailed, slot)
	}
	return &agentpb.Report{Image: req.GetImage(), Slots: []*agentpb.SlotReport{{Slot: slot, Result: rollout.ResultReplaced, OldImage: "app:v1"}}}, nil
}

func (quickAgent) Promote(context.Context, string) error { return nil }

func (quickAgent) Counters(context.Context, time.Duration, time.Duration, func(*agentpb.CountersSample)) error {
	return nil
}

func TestARealRolloutEndsWithTheViewOfItsResultAndThePlainLinesOfItsEvents(t *testing.T) {
	hosts, slots := fleet(300), []string{"web", "api"}
	failing := map[string]bool{hosts[7]: true, hosts[150]: true}
	var out, plainOut syncBuffer
	l := start(&out, NewTracker("app:v2", hosts, slots), noStyles(), 10*time.Millisecond)
	p := NewPlain(&plainOut, hosts, slots)
	var mu sync.Mutex
	var events []rollout.Event
	batch, _ := rollout.ParseSize("100")
	maxFailures, _ := rollout.ParseMaxFailures("10")
	e := &rollout.Executor{
		Dial: func(_ context.Context, h string) (rollout.Agent, error) {
			return quickAgent{host: h, fail: failing[h]}, nil
		},
		Image: "app:v2", MaxFailures: maxFailures, ConnectTimeout: time.Second, StepTimeout: 10 * time.Second,
		Events: func(ev rollout.Event) {
			l.Event(ev)
			p.Event(ev)
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	res, err := e.Run(t.Context(), hosts, slots, rollout.Strategy{Batch: batch})
	if err == nil {
		t.Fatal("two hosts failed, and Run said nothing")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if res.Totals.Done != 298 || res.Totals.Failed != 2 {
		t.Fatalf("totals %+v, want 298 done and 2 failed", res.Totals)
	}

	got := screen(t, out.String(), fileWidth, fileHeight, true)
	t.Logf("the screen at the end:\n%s", got)
	for _, want := range []string{
		"batches  3/3 done · batch 3/3 · 100 hosts",
		"step     2/2 api · 100 hosts · ended",
		"hosts    298 done · 2 failed · 0 to go",
		"failures host-00007:7441: web: health gate timed out",
		"         host-00150:7441: web: health gate timed out",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the final view lacks %q:\n%s", want, got)
		}
	}

	var want bytes.Buffer
	ref := rollout.NewProgress(&want, hosts, slots)
	for _, ev := range events {
		ref.Event(ev)
	}
	if plainOut.String() != want.String() {
		t.Errorf("the plain lines differ from rollout.Progress's at byte %d", firstDiff(plainOut.String(), want.String()))
	}
	if n := strings.Count(plainOut.String(), "\n"); n < 300*2*4 {
		t.Errorf("%d plain lines, want at least a phase line per phase and a line per slot", n)
	}
}
