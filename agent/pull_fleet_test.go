package agent

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/docker"
)

func TestPullOfAnImageTheHostHasIsAlreadyDone(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	calls := 0
	got, err := a.Pull(context.Background(), PullRequest{Image: "app:v2"}, func(docker.PullProgress) { calls++ })
	if err != nil || !got.Already || got.ImageID != "sha256:v2" || calls != 0 {
		t.Fatalf("pull %+v, %v, %d progress calls: want already, sha256:v2, none", got, err, calls)
	}
}

func TestPullReportsItsProgressAndTouchesNoSlotEvenOnABusyHost(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.pullProgressEvery = 10 * time.Millisecond
	w.pullable("app:v3", &fakePull{every: 30 * time.Millisecond, steps: []docker.PullProgress{
		{Layers: 2}, {Layers: 2, Size: 100, Downloaded: 40}, {Layers: 2, Done: 1, Size: 100, Downloaded: 100}, {Layers: 2, Done: 2, Size: 100, Downloaded: 100},
	}})
	lock, err := AcquireLock(a.cfg.StateDir, "pid 1: rollout of app:v2") // a replacement runs
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	var mu sync.Mutex
	var seen []docker.PullProgress
	got, err := a.Pull(context.Background(), PullRequest{Image: "app:v3", Origin: "prepull"}, func(p docker.PullProgress) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, p)
	})
	if err != nil || got.Already || got.ImageID != "sha256:app:v3" || got.Last.Done != 2 {
		t.Fatalf("pull %+v, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 3 {
		t.Fatalf("progress %+v: want a report every 10ms of a 120ms pull", seen)
	}
	if m := w.mutations(); len(m) > 0 {
		t.Fatalf("a pull changed %v", m)
	}
}

func TestPullRefusals(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.AllowedImages = []string{"app:*"}
	if _, err := a.Pull(context.Background(), PullRequest{Image: "app:v9"}, nil); !errors.Is(err, docker.ErrImageNotFound) {
		t.Errorf("an image no registry has: %v, want ErrImageNotFound", err)
	}
	if _, err := a.Pull(context.Background(), PullRequest{Image: "other:v1"}, nil); !errors.Is(err, ErrImageNotAllowed) {
		t.Errorf("an image the allowlist refuses: %v, want ErrImageNotAllowed", err)
	}
	if _, err := a.Pull(context.Background(), PullRequest{Image: "Bad Image"}, nil); !errors.Is(err, ErrInvalidImage) {
		t.Errorf("a bad reference: %v, want ErrInvalidImage", err)
	}
	if err := a.CheckFence(*fence(10, "r10")); err != nil {
		t.Fatal(err)
	}
	p := w.pullable("app:v3", &fakePull{steps: []docker.PullProgress{{Layers: 1, Done: 1}}})
	if _, err := a.Pull(context.Background(), PullRequest{Image: "app:v3", Fence: fence(9, "r9")}, nil); !errors.Is(err, ErrFenced) {
		t.Errorf("a stale rollout's pull: %v, want ErrFenced", err)
	}
	select {
	case <-p.started:
		t.Error("a fenced pull pulled")
	default:
	}
	if got, err := a.Pull(context.Background(), PullRequest{Image: "app:v3", Fence: fence(10, "r10")}, nil); err != nil || got.Already {
		t.Errorf("the current rollout's pull: %+v, %v", got, err)
	}
}

// prefer_start_first (a fleet rollback's) asks for start-first where the
// slot allows it: its container can run beside its replacement, and its
// strategy is auto. An operator's stop-first stays stop-first.
func TestPreferStartFirstReplacesStartFirstWhereTheContainerAllowsIt(t *testing.T) {
	w := newWorld(t)
	w.startFirst()                 // new containers publish ephemeral ports...
	fixed := w.addSlot("fixed", 7) // ...but this one a fixed one: stop-first whatever is preferred
	free := w.addSlot("free", 3)   // auto, and free to run beside: start-first
	w.ctrs[w.byName("free").ID].FixedHostPorts = nil
	worker := w.addSlot("worker", 5) // free to run beside, but the operator says stop-first
	worker.Strategy = StrategyStopFirst
	w.ctrs[w.byName("worker").ID].FixedHostPorts = nil
	a := newTestAgent(t, w, fixed, free, worker)
	client, _ := serve(t, a, context.Background())
	want := map[string]string{"fixed": StrategyStopFirst, "free": StrategyStartFirst, "worker": StrategyStopFirst}
	for _, c := range []struct {
		image  string
		prefer bool
	}{{"app:v2", false}, {"app:v1", true}} {
		rep, err := redeployRPC(t, client, &agentpb.RedeployRequest{Image: c.image, PreferStartFirst: c.prefer})
		if err != nil || rep.GetError() != "" {
			t.Fatalf("redeploy of %s, prefer_start_first %v: %v, %v", c.image, c.prefer, rep, err)
		}
		got, err := a.History(HistoryQuery{Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		strategies := map[string]string{}
		for _, e := range got {
			strategies[e.Slot] = e.Strategy
		}
		if !maps.Equal(strategies, want) {
			t.Errorf("redeploy of %s, prefer_start_first %v: strategies %v, want %v", c.image, c.prefer, strategies, want)
		}
	}
}
