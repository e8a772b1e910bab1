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
	limit := a.cfg.Docker.PullTimeout
	asked, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if req.CallerGone != nil {
		go func() {
			select {
			case <-req.CallerGone:
				cancel(errCallerGone)
			case <-asked.Done():
			}
		}()
	}
	pctx, cancelTimeout := context.WithTimeoutCause(asked, limit, ErrPullTimeout)
	defer cancelTimeout()

	begin := time.Now()
	log := a.log.With("image", req.Image)
	var (
		mu     sync.Mutex
		pulled bool // the daemon reported a layer
		last   docker.PullProgress
	)
	progress := func(p docker.PullProgress) {
		mu.Lock()
		defer mu.Unlock()
		if !pulled {
			log.Info("pulling image", "pull_timeout", limit)
		}
		pulled, last = true, p
	}
	// Reported on a clock rather than on the daemon's messages: a stalled
	// pull sends none, and is what most needs telling.
	var reporting sync.WaitGroup
	stopReports := make(chan struct{})
	reporting.Go(func() {
		tick := time.NewTicker(a.pullEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopReports:
				return
			case <-tick.C:
			}
			mu.Lock()
			p, ok := last, pulled
			mu.Unlock()
			if !ok {
				continue
			}
			log.Info("pulling image", "progress", p.String(), "elapsed", time.Since(begin).Round(time.Second))
			events(Event{Slot: pullSlot, Phase: PhasePull, Start: begin, Duration: time.Since(begin), Progress: true,
				Detail: fmt.Sprintf("pulling %s: %s", req.Image, p)})
		}
	})
	id, err := a.docker.EnsureImage(pctx, req.Image, progress)
	close(stopReports)
	reporting.Wait() // no report after the outcome
	mu.Lock()
	defer mu.Unlock()
	stopped := err != nil && pctx.Err() != nil
	if stopped {
		how := fmt.Sprintf("no layer had started after %s", roundPull(time.Since(begin)))
		if pulled {
			how = fmt.Sprintf("%s after %s", last, roundPull(time.Since(begin)))
		}
		switch cause := context.Cause(pctx); {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w: %s: interrupted (%v): %s; nothing was changed", ErrPullCancelled, req.Image, context.Cause(ctx), how)
		case errors.Is(cause, errCallerGone):
			err = fmt.Errorf("%w: %s: %v: %s; nothing was changed", ErrPullCancelled, req.Image, cause, how)
		case errors.Is(cause, ErrPullTimeout):
			err = fmt.Errorf("%w after %s: %s: %s; nothing was changed: raise docker.pull_timeout, or pull the image on this host beforehand (docker pull %s)",
				ErrPullTimeout, limit, req.Image, how, req.Image)
		}
	}
	if !pulled && !stopped {
		return id, err // on the host already, or not to be had: preflight says why
	}
	ev := Event{Slot: pullSlot, Phase: PhasePull, Start: begin, Duration: time.Since(begin)}
	if err != nil {
		ev.Err, ev.Cause = err.Error(), err
		log.Error("image pull failed", "error", err)
	} else {
		ev.Detail = fmt.Sprintf("pulled %s: %s", req.Image, last)
		log.Info("image pulled", "progress", last.String(), "duration", ev.Duration.Round(time.Millisecond))
	}
	events(ev)
	return id, err
}

// roundPull rounds a pull's duration for a person: to the millisecond, or
// the microsecond below one.
func roundPull(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
