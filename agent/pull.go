package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/haroll/haroll/docker"
)

// pullSlot names the image pull in events: it is one for every slot.
const pullSlot = "(image)"

// pullReportEvery is how often a pull's progress is logged and sent to the
// caller (Agent.pullEvery).
const pullReportEvery = 5 * time.Second

// errCallerGone is why a pull stops when the caller went away.
var errCallerGone = errors.New("the caller went away")

// pullProgressEvery is how often Pull sends its caller the progress of the
// pull (Agent.pullProgressEvery): a fleet rollout shows it live.
const pullProgressEvery = 500 * time.Millisecond

// pullImage makes sure the image is on the host, pulling it when it is not,
// within docker.pull_timeout. Nothing has been changed yet, so nothing is
// left to finish: the pull stops when ctx ends (the agent stops, the CLI is
// interrupted), when req.CallerGone is closed, or at docker.pull_timeout,
// and the error wraps ErrPullCancelled or ErrPullTimeout. While it pulls, it logs its progress
// and sends it to events (not to the Observer: it is no finished phase)
// every pullEvery; a pull that finished, or was stopped, is a PhasePull
// event. A pull that fails on its own (no such image, no registry) is left
// to preflight to report.
func (a *Agent) pullImage(ctx context.Context, req Request, events func(Event)) (string, error) {
	log := a.log.With("image", req.Image)
	f, err := a.fetch(ctx, req.Image, req.CallerGone, a.pullEvery, func(p docker.PullProgress, begin time.Time) {
		elapsed := time.Since(begin)
		log.Info("pulling image", "progress", p.String(), "elapsed", elapsed.Round(time.Second))
		events(Event{Slot: pullSlot, Phase: PhasePull, Start: begin, Duration: elapsed, Progress: true,
			Detail: fmt.Sprintf("pulling %s: %s", req.Image, p)})
	})
	if !f.pulled && !f.stopped {
		return f.id, err // on the host already, or not to be had: preflight says why
	}
	ev := Event{Slot: pullSlot, Phase: PhasePull, Start: f.begin, Duration: time.Since(f.begin)}
	if err != nil {
		ev.Err, ev.Cause = err.Error(), err
		log.Error("image pull failed", "error", err)
	} else {
		ev.Detail = fmt.Sprintf("pulled %s: %s", req.Image, f.last)
		log.Info("image pulled", "progress", f.last.String(), "duration", ev.Duration.Round(time.Millisecond))
	}
	events(ev)
	return f.id, err
}

// fetched is how a pull (fetch) went.
type fetched struct {
	id string
	// pulled: the daemon reported a layer, so the image was not on the
	// host (EnsureImage reports nothing for an image it has); last is its
	// last progress.
	pulled bool
	last   docker.PullProgress
	// stopped: ctx ended, the caller went away or pull_timeout passed.
	stopped bool
	begin   time.Time
}

// fetch is the pull under pullImage and Pull: EnsureImage within
// docker.pull_timeout, stopped when ctx ends or callerGone (when not nil)
// is closed, calling report every `every` with the progress so far (and
// when the pull began) once the daemon has named a layer. A stopped pull's error wraps
// ErrPullCancelled or ErrPullTimeout and says how far it got.
func (a *Agent) fetch(ctx context.Context, image string, callerGone <-chan struct{}, every time.Duration, report func(p docker.PullProgress, begin time.Time)) (fetched, error) {
	limit := a.cfg.Docker.PullTimeout
	asked, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if callerGone != nil {
		go func() {
			select {
			case <-callerGone:
				cancel(errCallerGone)
			case <-asked.Done():
			}
		}()
	}
	pctx, cancelTimeout := context.WithTimeoutCause(asked, limit, ErrPullTimeout)
	defer cancelTimeout()

	f := fetched{begin: time.Now()}
	var mu sync.Mutex
	progress := func(p docker.PullProgress) {
		mu.Lock()
		defer mu.Unlock()
		if !f.pulled {
			a.log.Info("pulling image", "image", image, "pull_timeout", limit)
		}
		f.pulled, f.last = true, p
	}
	// Reported on a clock rather than on the daemon's messages: a stalled
	// pull sends none, and is what most needs telling.
	var reporting sync.WaitGroup
	stopReports := make(chan struct{})
	reporting.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stopReports:
				return
			case <-tick.C:
			}
			mu.Lock()
			p, ok := f.last, f.pulled
			mu.Unlock()
			if ok {
				report(p, f.begin)
			}
		}
	})
	id, err := a.docker.EnsureImage(pctx, image, progress)
	close(stopReports)
	reporting.Wait() // no report after the outcome
	mu.Lock()
	defer mu.Unlock()
	f.id = id
	f.stopped = err != nil && pctx.Err() != nil
	if f.stopped {
		how := fmt.Sprintf("no layer had started after %s", roundPull(time.Since(f.begin)))
		if f.pulled {
			how = fmt.Sprintf("%s after %s", f.last, roundPull(time.Since(f.begin)))
		}
		switch cause := context.Cause(pctx); {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w: %s: interrupted (%v): %s; nothing was changed", ErrPullCancelled, image, context.Cause(ctx), how)
		case errors.Is(cause, errCallerGone):
			err = fmt.Errorf("%w: %s: %v: %s; nothing was changed", ErrPullCancelled, image, cause, how)
		case errors.Is(cause, ErrPullTimeout):
			err = fmt.Errorf("%w after %s: %s: %s; nothing was changed: raise docker.pull_timeout, or pull the image on this host beforehand (docker pull %s)",
				ErrPullTimeout, limit, image, how, image)
		}
	}
	return f, err
}

// PullRequest asks for an image on the host, touching no slot: a fleet
// rollout's prepull.
type PullRequest struct {
	Image string
	// Fence is checked first (CheckFence); nil for a person's pull.
	Fence  *Fence
	Origin string
	// CallerGone, when not nil, stops the pull when it is closed.
	CallerGone <-chan struct{}
}

// Pulled is how Pull ended: the image's ID, whether the host had it
// (Already: nothing was pulled), and the pull's last progress.
type Pulled struct {
	ImageID string
	Already bool
	Last    docker.PullProgress
}

// Pull makes sure req.Image is on the host, as a redeploy's preflight does
// (the allowlist, docker.pull_timeout), but touches no slot and takes no
// host lock: it may run beside a replacement. progress, when not nil, is
// called every pullProgressEvery while layers come. Errors: ErrFenced,
// ErrInvalidImage, ErrImageNotAllowed (nothing pulled); docker's
// ErrImageNotFound with the engine's reason; ErrPullTimeout or
// ErrPullCancelled when the pull was stopped.
func (a *Agent) Pull(ctx context.Context, req PullRequest, progress func(docker.PullProgress)) (Pulled, error) {
	if err := a.validateImage(req.Image); err != nil {
		return Pulled{}, err
	}
	if req.Fence != nil {
		if err := a.CheckFence(*req.Fence); err != nil {
			return Pulled{}, err
		}
	}
	f, err := a.fetch(ctx, req.Image, req.CallerGone, a.pullProgressEvery, func(p docker.PullProgress, _ time.Time) {
		if progress != nil {
			progress(p)
		}
	})
	log := a.log.With("image", req.Image, "origin", req.Origin)
	if err != nil {
		log.Error("image pull failed", "error", err)
		return Pulled{}, err
	}
	if f.pulled {
		log.Info("image pulled", "image_id", f.id, "progress", f.last.String(), "duration", time.Since(f.begin).Round(time.Millisecond))
	}
	return Pulled{ImageID: f.id, Already: !f.pulled, Last: f.last}, nil
}

// roundPull rounds a pull's duration for a person: to the millisecond, or
// the microsecond below one.
func roundPull(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
