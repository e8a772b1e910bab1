package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/docker"
)

// redeployWithin runs a.Redeploy and fails the test when it has not
// returned within d: a pull left to run holds the host lock.
func redeployWithin(t *testing.T, a *Agent, ctx context.Context, req Request, d time.Duration) (Report, error) {
	t.Helper()
	type outcome struct {
		rep Report
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		rep, err := a.Redeploy(ctx, req, nil)
		done <- outcome{rep, err}
	}()
	select {
	case out := <-done:
		return out.rep, out.err
	case <-time.After(d):
		t.Fatalf("Redeploy of %s still running after %s, the host lock held (busy: %q)", req.Image, d, a.Busy())
		return Report{}, nil
	}
}

// assertHostFree fails unless nothing was changed in HAProxy or Docker and
// the host lock is free.
func assertHostFree(t *testing.T, w *world, a *Agent) {
	t.Helper()
	if m := w.mutations(); len(m) > 0 {
		t.Errorf("HAProxy or Docker changed by a request that never got its image: %v", m)
	}
	if b := a.Busy(); b != "" {
		t.Errorf("host still busy: %s", b)
	}
	lock, err := AcquireLock(a.cfg.StateDir, "test")
	if err != nil {
		t.Fatalf("host lock not released: %v", err)
	}
	lock.Release()
}

func TestAPullThatHangsEndsAtPullTimeoutAndLeavesTheHostFree(t *testing.T) {
	w := newWorld(t)
	w.pullable("app:v3", &fakePull{hang: true})
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Docker.PullTimeout = 150 * time.Millisecond
	begin := time.Now()
	_, err := redeployWithin(t, a, context.Background(), Request{Image: "app:v3"}, 5*time.Second)
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("the pull ended %s after it began, pull_timeout is 150ms", took)
	}
	if err == nil || !strings.Contains(err.Error(), "image pull timed out after 150ms") {
		t.Fatalf("error %v, want one saying the image pull timed out after 150ms", err)
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrPullTimeout) || !errors.Is(err, ErrPreflight) {
		t.Errorf("error %v should wrap ErrPullTimeout and ErrPreflight", err)
	}
	if !strings.Contains(err.Error(), "docker.pull_timeout") || !strings.Contains(err.Error(), "app:v3") {
		t.Errorf("error %q should name the image and the key to raise", err)
	}
	assertHostFree(t, w, a)
}

func TestALostCallerStopsAPullThatChangedNothing(t *testing.T) {
	w := newWorld(t)
	pull := w.pullable("app:v3", &fakePull{hang: true})
	a, rec := observedAgent(t, w, w.addSlot("app-1", 7))
	client, svc := serve(t, a, context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := client.Redeploy(ctx, &agentpb.RedeployRequest{Image: "app:v3"}); err != nil {
		t.Fatal(err)
	}
	<-pull.started
	cancel() // the CLI was interrupted, the coordinator's step timed out
	select {
	case <-pull.ended:
	case <-time.After(5 * time.Second):
		t.Fatalf("the pull still runs 5s after its caller went away, the host busy with %q", a.Busy())
	}
	svc.Wait()
	assertHostFree(t, w, a)
	rec.mu.Lock()
	var pullErr string
	for _, e := range rec.events {
		if e.Phase == PhasePull {
			pullErr = e.Err
		}
	}
	rec.mu.Unlock()
	t.Logf("pull: %s", pullErr)
	if !strings.Contains(pullErr, "image pull cancelled: app:v3: the caller went away") {
		t.Errorf("pull event error %q, want it to say the caller went away", pullErr)
	}
	// The host takes the next request.
	w.mu.Lock()
	w.images["app:v3"] = "sha256:v3"
	w.mu.Unlock()
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v3"}, nil); err != nil {
		t.Fatalf("the next redeploy: %v", err)
	}
}

func TestShuttingDownStopsAPullAtOnceAndSaysSo(t *testing.T) {
	w := newWorld(t)
	pull := w.pullable("app:v3", &fakePull{hang: true})
	life, stop := context.WithCancel(context.Background())
	defer stop()
	a := newTestAgent(t, w, w.addSlot("app-1", 7), w.addSlot("app-2", 3))
	client, svc := serve(t, a, life)
	stream, err := client.Redeploy(context.Background(), &agentpb.RedeployRequest{Image: "app:v3"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-pull.started
		stop() // SIGTERM
	}()
	errs := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				errs <- err
				return
			}
		}
	}()
	select {
	case err = <-errs:
	case <-time.After(5 * time.Second):
		t.Fatalf("no answer 5s after SIGTERM during the pull, the host busy with %q", a.Busy())
	}
	svc.Wait()
	t.Logf("error: %v", err)
	if status.Code(err) != codes.Canceled || !strings.Contains(err.Error(), "image pull cancelled") {
		t.Fatalf("got %v, want code Canceled and \"image pull cancelled\"", err)
	}
	assertHostFree(t, w, a)
}

// lockedBuffer is a log destination safe for the replacement's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var progressDetail = regexp.MustCompile(`^pulling app:v3: [0-9.]+ MB of 120 MB \([0-7] layers done of 7\)$`)

func TestAPullReportsItsProgressEveryFewSecondsToTheLogAndTheCallerButNotTheObserver(t *testing.T) {
	w := newWorld(t)
	const mb = 1_000_000
	var steps []docker.PullProgress
	for i := 1; i <= 7; i++ {
		steps = append(steps, docker.PullProgress{Downloaded: int64(i) * 17 * mb, Size: 120 * mb, Layers: 7, Done: i - 1})
	}
	steps = append(steps, docker.PullProgress{Downloaded: 120 * mb, Size: 120 * mb, Layers: 7, Done: 7})
	w.pullable("app:v3", &fakePull{steps: steps, every: 20 * time.Millisecond})
	a, rec := observedAgent(t, w, w.addSlot("app-1", 7))
	var logs lockedBuffer
	a.log = slog.New(slog.NewTextHandler(&logs, nil))
	a.pullEvery = 50 * time.Millisecond
	var events []Event
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v3"}, func(e Event) { events = append(events, e) })
	if err != nil || rep.Slots[0].Result != ResultReplaced {
		t.Fatalf("redeploy: %v, %+v", err, rep)
	}
	var progress []Event
	var finished *Event
	for i, e := range events {
		if e.Phase != PhasePull {
			continue
		}
		if e.Slot != pullSlot {
			t.Errorf("pull event for slot %q, want %q", e.Slot, pullSlot)
		}
		if e.Progress {
			progress = append(progress, e)
		} else {
			finished = &events[i]
		}
	}
	if len(progress) == 0 {
		t.Fatalf("no progress event in %d ms of pulling: %+v", 8*20, events)
	}
	t.Logf("first progress: %s after %s", progress[0].Detail, progress[0].Duration)
	for i, e := range progress {
		if !progressDetail.MatchString(e.Detail) {
			t.Errorf("progress detail %q", e.Detail)
		}
		if i > 0 && e.Duration < progress[i-1].Duration {
			t.Errorf("progress reports out of order: %s after %s", e.Duration, progress[i-1].Duration)
		}
	}
	if finished == nil || finished.Detail != "pulled app:v3: 120 MB of 120 MB (7 layers done of 7)" || finished.Err != "" {
		t.Fatalf("finished pull event %+v", finished)
	}
	if most := int(finished.Duration/a.pullEvery) + 1; len(progress) > most {
		t.Errorf("%d progress reports in %s, want at most one every %s", len(progress), finished.Duration, a.pullEvery)
	}
	for _, e := range rec.events {
		if e.Progress {
			t.Errorf("the observer was told of a progress report: %+v", e)
		}
	}
	if got := rec.phases(pullSlot); len(got) != 1 {
		t.Errorf("the observer saw pull phases %v, want the finished one", got)
	}
	if !strings.Contains(logs.String(), `msg="pulling image" image=app:v3 progress="`) || !strings.Contains(logs.String(), `layers done of 7)"`) {
		t.Errorf("no progress line in the log:\n%s", logs.String())
	}
}

func TestAnImageOnTheHostIsNotPulledAndReportsNoPull(t *testing.T) {
	w := newWorld(t)
	a, rec := observedAgent(t, w, w.addSlot("app-1", 7))
	var events []Event
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) { events = append(events, e) }); err != nil {
		t.Fatal(err)
	}
	for _, e := range append(events, rec.events...) {
		if e.Phase == PhasePull {
			t.Fatalf("pull event for an image on the host: %+v", e)
		}
	}
}

func TestAStalledPullKeepsReportingWhereItStandsUntilPullTimeout(t *testing.T) {
	w := newWorld(t)
	w.pullable("app:v3", &fakePull{steps: []docker.PullProgress{{Downloaded: 17_000_000, Size: 120_000_000, Layers: 7}}, every: time.Millisecond, hang: true})
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.Docker.PullTimeout = 200 * time.Millisecond
	a.pullEvery = 20 * time.Millisecond
	var events []Event
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v3"}, func(e Event) { events = append(events, e) })
	if !errors.Is(err, ErrPullTimeout) || !strings.Contains(err.Error(), "17 MB of 120 MB (0 layers done of 7) after 2") {
		t.Fatalf("got %v, want a pull timeout saying where the pull stood", err)
	}
	stalled := 0
	for _, e := range events {
		if e.Progress && e.Detail == "pulling app:v3: 17 MB of 120 MB (0 layers done of 7)" {
			stalled++
		}
	}
	if stalled < 3 {
		t.Errorf("%d progress reports of the stalled pull in 200ms at one every 20ms, want it told again and again: %+v", stalled, events)
	}
	assertHostFree(t, w, a)
}
