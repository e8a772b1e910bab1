package docker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/integration/harness"
)

// registry starts a harness.Registry for the test; the image a pull made
// is removed at the end.
func registry(t *testing.T, stall bool) (*harness.Registry, string) {
	t.Helper()
	reg, err := harness.StartRegistry(stall)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("haroll-test-" + runID + "/app:1")
	t.Cleanup(func() {
		reg.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := harness.RemoveImage(ctx, ref); err != nil {
			t.Log(err)
		}
	})
	return reg, ref
}

func TestAPullFromARegistryReportsItsProgressToTheEnd(t *testing.T) {
	c := engine(t)
	reg, ref := registry(t, false)
	var seen []docker.PullProgress
	id, err := c.EnsureImage(testContext(t, 2*time.Minute), ref, func(p docker.PullProgress) { seen = append(seen, p) })
	if err != nil {
		t.Fatal(err)
	}
	if id != reg.ImageID {
		t.Errorf("EnsureImage = %s, want the registry's image %s", id, reg.ImageID)
	}
	want := docker.PullProgress{Downloaded: reg.LayerSize, Size: reg.LayerSize, Layers: 1, Done: 1}
	if len(seen) == 0 || seen[len(seen)-1] != want {
		t.Fatalf("progress %+v, want it to end at %+v", seen, want)
	}
	t.Logf("%d progress reports, the last %s", len(seen), seen[len(seen)-1])
	// Now local: no pull, no progress.
	seen = nil
	if _, err := c.EnsureImage(testContext(t, 30*time.Second), ref, func(p docker.PullProgress) { seen = append(seen, p) }); err != nil || len(seen) > 0 {
		t.Fatalf("EnsureImage of a local image: %v, progress %v", err, seen)
	}
}

// stalledPull starts EnsureImage of ref under ctx and waits until the daemon
// reports bytes of the layer the registry stalls; it returns the pull's
// outcome.
func stalledPull(t *testing.T, c *docker.Client, ctx context.Context, ref string) <-chan error {
	t.Helper()
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := c.EnsureImage(ctx, ref, func(p docker.PullProgress) {
			if p.Downloaded > 0 {
				once.Do(func() { close(started) })
			}
		})
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the pull ended before the registry stalled it: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("no byte of the layer reported in 90s")
	}
	return done
}

// endsWithin waits for the pull's outcome for at most d.
func endsWithin(t *testing.T, done <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("the pull still runs %s after its context ended", d)
		return nil
	}
}

func TestAStalledPullStopsWhenCancelledAndTheDaemonDropsIt(t *testing.T) {
	c, api := engine(t), rawAPI(t)
	reg, ref := registry(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := stalledPull(t, c, ctx, ref)
	cancel()
	begin := time.Now()
	err := endsWithin(t, done, 10*time.Second)
	t.Logf("cancelled pull ended after %s: %v", time.Since(begin), err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := api.ImageInspect(testContext(t, 30*time.Second), ref); !cerrdefs.IsNotFound(err) {
		t.Fatalf("image after a cancelled pull: %v, want not found", err)
	}
	// The daemon dropped the pull: a new one asks the registry for the
	// layer again, where a pull still running in the daemon would be
	// joined without a new request.
	asked := reg.LayerRequests()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	done2 := make(chan error, 1)
	go func() {
		_, err := c.EnsureImage(ctx2, ref, nil)
		done2 <- err
	}()
	for reg.LayerRequests() == asked {
		select {
		case <-reg.LayerRequested():
		case err := <-done2:
			t.Fatalf("the second pull ended without asking for the layer (the daemon kept the first one running): %v", err)
		}
	}
	cancel2()
	if err := endsWithin(t, done2, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("second pull: got %v, want context.Canceled", err)
	}
}

func TestAStalledPullEndsAtItsDeadline(t *testing.T) {
	c := engine(t)
	_, ref := registry(t, true)
	const limit = 3 * time.Second
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_, err := c.EnsureImage(ctx, ref, nil)
	took := time.Since(begin)
	t.Logf("pull with a %s deadline ended after %s: %v", limit, took, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if took > limit+5*time.Second {
		t.Fatalf("the pull ended %s after its %s deadline", took-limit, limit)
	}
}
