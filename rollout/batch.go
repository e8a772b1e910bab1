package rollout

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-multierror"
)

// execute runs plan's batches in order, stopping before a batch when the
// context is done, the state file could not be written, or failures passed
// MaxFailures, and marks the state complete unless the context is done.
func (r *run) execute(ctx context.Context, hosts []string, plan Plan, res Result, start time.Time) (Result, error) {
	e := r.e
	var errs *multierror.Error
	// accepted: the failed hosts a person let the rollout go on with
	// (on_failure: pause, then promote); only more pause it again.
	failedHosts, accepted := 0, 0
	if r.rollingBack != "" { // a resume of an on_failure rollback cut short: finish it, run no batch
		res.Stopped, res.RolledBack = r.onFailureRollback(ctx, plan, len(plan.Batches)-1, r.rollingBack)
	}
	for bi, b := range plan.Batches {
		br := BatchResult{Batch: bi + 1, Canary: b.Canary, Hosts: len(b.Hosts)}
		if res.Stopped != "" {
			res.Batches = append(res.Batches, br)
			continue
		}
		var next []string
		if bi+1 < len(plan.Batches) {
			next = r.pending(plan.Batches[bi+1])
		}
		failed, stop, err := r.batch(ctx, bi, len(plan.Batches), b, next, &br)
		errs = multierror.Append(errs, err)
		res.Batches = append(res.Batches, br)
		failedHosts += failed
		last := bi == len(plan.Batches)-1
		exceeded := failedHosts > accepted && e.MaxFailures.Exceeded(failedHosts, plan.Hosts())
		switch {
		case stop != "":
			res.Stopped = stop
		case ctx.Err() != nil:
			res.Stopped = "cancelled: " + context.Cause(ctx).Error()
		case r.w.failed() != nil:
			res.Stopped = r.w.failed().Error()
		case r.lockLost() != nil:
			res.Stopped = r.lockLost().Error()
			r.unfinished = true // resumable by whoever holds the lock next
		case exceeded && e.OnFailure == OnFailureRollback:
			res.Stopped = fmt.Sprintf("%d of %d hosts failed, more than max_failures %s", failedHosts, plan.Hosts(), e.MaxFailures)
			res.Stopped, res.RolledBack = r.onFailureRollback(ctx, plan, bi, res.Stopped)
		case exceeded && !last && e.OnFailure == OnFailurePause:
			if res.Stopped = r.pauseOnFailure(ctx, failedHosts, plan.Hosts()); res.Stopped == "" {
				accepted = failedHosts
			}
		case !last && exceeded:
			res.Stopped = fmt.Sprintf("%d of %d hosts failed, more than max_failures %s", failedHosts, plan.Hosts(), e.MaxFailures)
		}
		if res.Stopped != "" && !last {
			r.log.Warn("rollout stopped", "batch", bi+1, "reason", res.Stopped)
		}
	}
	if r.lockLost() != nil {
		r.unfinished = true // also when lost during an on_failure rollback
	}

	res.Hosts = r.hostResults(hosts, plan)
	res.Totals = totals(res.Hosts)
	res.Total = time.Since(start)
	if err := r.w.failed(); err != nil {
		errs = multierror.Append(errs, err)
	}
	if err := r.lockLost(); err != nil {
		errs = multierror.Append(errs, err)
	}
	if ctx.Err() == nil && r.w.failed() == nil && !r.unfinished {
		outcome := HostDone
		if errs.ErrorOrNil() != nil {
			outcome = HostFailed
		}
		if err := r.w.complete(outcome, res.Stopped); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%w: the rollout ended but the file does not say so", err))
		}
	}
	res.StateWrites = r.w.writes()
	if errs.ErrorOrNil() == nil && ctx.Err() == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		errs = multierror.Append(errs, context.Cause(ctx))
	}
	errs.ErrorFormat = listErrors
	err := fmt.Errorf("%w: %d of %d hosts failed, %d not run: %w", ErrFailed, res.Totals.Failed, res.Totals.Hosts, res.Totals.NotRun, errs)
	res.Error = err.Error()
	return res, err
}

// batch runs b step by step and returns how many of its hosts failed, and
// why the rollout must stop if a canary says so. A host that failed a step
// is not asked for its later slots.
//
// Connections: b's hosts are dialled as it starts (those the preflight kept
// or b's pre-dial reached are open already). When b's last step starts,
// next's (the following batch's hosts) are pre-dialled: predialHeadStart of
// them at once, then one each time a connection of b is closed, so that
// next's first step mostly does not wait for TLS handshakes while the
// connections open stay about one batch plus the head start. A host's
// connection is closed after its last step in b, or its failure; in a
// canary batch, the hosts the canary judges keep theirs until b ends, and
// when b's last step is a canary step nothing is pre-dialled before the
// canary is judged.
func (r *run) batch(ctx context.Context, bi, nb int, b Batch, next []string, res *BatchResult) (int, string, error) {
	br := &batchRun{run: r, index: bi, of: nb, b: b, failed: map[string]bool{}}
	log := r.log.With("batch", bi+1)
	// Pairs an earlier run finished are not asked again; a host that failed
	// one is failed here too.
	for si, st := range b.Steps {
		for _, h := range st.Hosts {
			if p, ok := r.prior[pair{h, si}]; ok && !slotOK(p.Result) && !br.failed[h] {
				br.fail(h, fmt.Errorf("host %s slot %s: %s (recorded before the resume)", h, st.Slot, p.Error))
			}
		}
	}
	res.Run = true
	pending := false
	for si := range b.Steps {
		pending = pending || len(br.ask(si)) > 0
	}
	canarySteps := r.e.Canary.canarySteps(b)
	if !pending && canarySteps < 0 { // finished before a resume
		res.Failed = len(br.failed)
		return len(br.failed), "", br.errs.ErrorOrNil()
	}
	defer func() {
		for _, h := range b.Hosts {
			r.conns.release(h)
		}
	}()
	r.conns.prepare(ctx, r.pending(b), preflightConcurrency)
	lastStep, lastAsk := -1, map[string]int{}
	for si := range b.Steps {
		for _, h := range br.ask(si) {
			lastStep, lastAsk[h] = si, si
		}
	}
	res.Start = time.Now()
	log.Info("batch start", "hosts", len(b.Hosts), "canary", b.Canary)
	r.emit(Event{Kind: EventBatchStart, Batch: bi + 1, Batches: nb, Canary: b.Canary, Hosts: len(b.Hosts), Steps: len(b.Steps)})
	stop := ""
	for si, st := range b.Steps {
		if ctx.Err() != nil || r.w.failed() != nil || r.checkLease(ctx) != nil {
			break
		}
		if si == canarySteps {
			if stop = br.judgeCanary(ctx, canarySteps); stop != "" {
				break
			}
		}
		hosts := br.ask(si)
		if len(hosts) == 0 {
			continue
		}
		// Not during a canary step: the canary is judged after it (a
		// --pause may last hours, a failed canary stops the rollout), and
		// the next batch is dialled when it starts.
		if si == lastStep && si >= canarySteps {
			r.conns.predial(ctx, next, preflightConcurrency, predialHeadStart)
		}
		done := func(h string, err error) {
			if err != nil || si == lastAsk[h] && si >= canarySteps {
				r.conns.release(h)
			}
		}
		pos := Event{Batch: bi + 1, Batches: nb, Canary: b.Canary, Step: si + 1, Steps: len(b.Steps), Slot: st.Slot}
		start := pos
		start.Kind, start.Hosts = EventStepStart, len(hosts)
		r.emit(start)
		t0 := time.Now()
		stepErrs := r.step(ctx, log, pos, si, hosts, si < canarySteps, done)
		for h, err := range stepErrs {
			br.fail(h, err)
		}
		end := pos
		end.Kind, end.Hosts, end.Failed, end.Duration = EventStepEnd, len(hosts), len(stepErrs), time.Since(t0)
		r.emit(end)
	}
	if canarySteps == len(b.Steps) && stop == "" && ctx.Err() == nil && r.w.failed() == nil && r.lockLost() == nil {
		stop = br.judgeCanary(ctx, canarySteps)
	}
	res.Failed, res.Duration = len(br.failed), time.Since(res.Start)
	log.Info("batch end", "hosts", len(b.Hosts), "failed", len(br.failed), "duration", res.Duration)
	r.emit(Event{Kind: EventBatchEnd, Batch: bi + 1, Batches: nb, Canary: b.Canary, Hosts: len(b.Hosts),
		Failed: len(br.failed), Duration: res.Duration})
	return len(br.failed), stop, br.errs.ErrorOrNil()
}

// batchRun is one batch of a run under way: where it is in the plan, the
// hosts that failed in it, and their errors.
type batchRun struct {
	*run
	index, of int // 0-based index of the batch, and the number of batches
	b         Batch
	failed    map[string]bool
	errs      *multierror.Error
}

// fail counts h as failed in this batch, for err.
func (br *batchRun) fail(h string, err error) {
	br.failed[h] = true
	br.errs = multierror.Append(br.errs, err)
}

// pending are the hosts of b this run asks for a slot: not skipped, with a
// pair left, and no pair recorded as failed before a resume.
func (r *run) pending(b Batch) []string {
	var out []string
	for _, h := range b.Hosts {
		if _, skipped := r.skipped[h]; skipped {
			continue
		}
		left := false
		for si := range b.Steps {
			p, done := r.prior[pair{h, si}]
			if done && !slotOK(p.Result) {
				left = false
				break
			}
			left = left || !done
		}
		if left {
			out = append(out, h)
		}
	}
	return out
}

// ask is the hosts to ask for step si: not failed, not finished before a
// resume, not skipped.
func (br *batchRun) ask(si int) []string {
	return slices.DeleteFunc(slices.Clone(br.b.Steps[si].Hosts), func(h string) bool {
		_, done := br.prior[pair{h, si}]
		_, skipped := br.skipped[h]
		return br.failed[h] || done || skipped
	})
}
