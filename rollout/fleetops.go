package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haroll/haroll/agent/agentpb"
)

// FleetAgent is what fleet operations ask of an agent beyond Agent: its
// claim, its image pull without a replacement, its history. *Client has
// them; an Agent without them (an agent of an earlier haroll, a test fake)
// is driven without claims, and refused a prepull.
type FleetAgent interface {
	Pull(ctx context.Context, image string, fence *agentpb.Fence, origin string, onProgress func(*agentpb.PullProgress)) (*agentpb.PullProgress, error)
	Claim(ctx context.Context, req *agentpb.ClaimRequest) (*agentpb.ClaimResponse, error)
	History(ctx context.Context, req *agentpb.HistoryRequest) (*agentpb.HistoryResponse, error)
}

// fencedPromoter promotes a canary under the run's fence (*Client).
type fencedPromoter interface {
	PromoteFenced(ctx context.Context, origin string, fence *agentpb.Fence) error
}

// *Client is what the executor finds by type assertion: checked here, not
// at run time.
var (
	_ FleetAgent     = (*Client)(nil)
	_ fencedPromoter = (*Client)(nil)
)

// ErrPrepull: a host could not get the image before the first drain; the
// rollout stopped with nothing changed.
var ErrPrepull = errors.New("prepull failed: not every host can get the image, nothing was changed")

// Defaults of fleet operations.
const (
	// DefaultPrepullConcurrency bounds the hosts pulling at once.
	DefaultPrepullConcurrency = 32
	// leaseCheckTimeout bounds the store's answer to "do I still hold the
	// lock?" before a step: no answer is a lost lock.
	leaseCheckTimeout = 5 * time.Second
)

// EventPrepull: Host has the image (Detail: pulled, or already there), or
// could not get it (Err). Hosts is how many hosts have it so far, Steps how
// many hosts pull in all.
const EventPrepull EventKind = "prepull"

// EventRollback: on_failure rollback put Slot of Host back on its old
// image (Detail), with Result.
const EventRollback EventKind = "rollback"

// undoFence is the fence of a request that puts a slot back on its old
// image (on_failure rollback, canary rollback): the rollout's, of kind
// rollback, so that the agents' history does not take the undo for a
// replacement of the rollout (a later `haroll rollout rollback` would put
// the new image back).
func (r *run) undoFence() *agentpb.Fence {
	if r.fence == nil {
		return nil
	}
	f := proto.Clone(r.fence).(*agentpb.Fence)
	f.Kind = KindRollback
	return f
}

// newFence is the agentpb.Fence of e's lease; nil without one.
func newFence(e *Executor) *agentpb.Fence {
	if e.Lease == nil {
		return nil
	}
	li := e.Lease.Info()
	f := &agentpb.Fence{Token: li.Token, RolloutId: li.RolloutID, Holder: li.Holder, Message: li.Message,
		Since: timestamppb.New(li.Since), Kind: li.Kind}
	if e.ClaimTTL > 0 {
		f.ClaimTtl = durationpb.New(e.ClaimTTL)
	}
	return f
}

// checkLease asks the store whether the run still holds the fleet lock:
// before every step (and every step of a rollback), so that a coordinator
// that lost it changes nothing more. The error wraps ErrLockLost.
func (r *run) checkLease(ctx context.Context) error {
	if r.e.Lease == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, leaseCheckTimeout)
	defer cancel()
	err := r.e.Lease.Check(cctx)
	if err == nil {
		return nil
	}
	return r.loseLock(err)
}

// loseLock records err (wrapped in ErrLockLost) as the lost lock that stops
// the run before its next step, and returns it: a failed lease check, or an
// agent that refused a request as fenced (it has seen a newer rollout).
func (r *run) loseLock(err error) error {
	if !errors.Is(err, ErrLockLost) {
		err = fmt.Errorf("%w: %w", ErrLockLost, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost == nil {
		r.lost = err
		r.log.Error("the fleet lock is lost: the rollout stops before its next step", "error", err)
	}
	return err
}

// lockLost is the lost lock that stopped the run, if one did.
func (r *run) lockLost() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// claim tells h's agent that it belongs to this rollout (the fence), right
// after its status at the preflight. An agent of an earlier haroll does not
// know claims: it is driven without one, and said so once.
func (r *run) claim(ctx context.Context, h string, a Agent) error {
	fa, ok := a.(FleetAgent)
	if r.fence == nil || !ok {
		return nil
	}
	_, err := fa.Claim(ctx, &agentpb.ClaimRequest{Fence: r.fence})
	if predatesFleetOps(err) {
		r.noClaims.Do(func() {
			r.log.Warn("an agent does not know fleet claims (an earlier haroll): a person's `haroll redeploy` on it is not refused during the rollout, and it is not fenced; upgrade the agents", "host", h)
		})
		return nil
	}
	if err != nil {
		return fmt.Errorf("host %s: claim for rollout %s: %w", h, r.fence.GetRolloutId(), err)
	}
	return nil
}

// releaseClaims ends the claims of the rollout on hosts, best effort and in
// the background of nothing: it waits, bounded by ConnectTimeout per host.
// It runs once the rollout ended; a claim it misses lapses on its own
// (claim_ttl).
func (r *run) releaseClaims(hosts []string) {
	if r.fence == nil || len(hosts) == 0 {
		return
	}
	var mu sync.Mutex
	missed := 0
	inPool(len(hosts), preflightConcurrency, func(i int) {
		if err := r.releaseClaim(hosts[i]); err != nil {
			mu.Lock()
			missed++
			mu.Unlock()
			r.log.Debug("claim not released", "host", hosts[i], "error", err)
		}
	})
	if missed > 0 {
		r.log.Warn("the claims of some hosts were not released: they lapse after claim_ttl, or `haroll rollout lock release` ends them", "hosts", missed)
	}
}

func (r *run) releaseClaim(h string) error {
	ctx, cancel := within(context.Background(), r.e.ConnectTimeout)
	defer cancel()
	a, err := r.conns.dialNow(ctx, h)
	if err != nil {
		return err
	}
	defer r.conns.closeAgent(a)
	fa, ok := a.(FleetAgent)
	if !ok {
		return nil
	}
	_, err = fa.Claim(ctx, &agentpb.ClaimRequest{Fence: r.fence, Release: true})
	if predatesFleetOps(err) {
		return nil
	}
	return err
}

// imageFor is the image (host, slot) is asked for: Images' when set (a
// rollback; false when the pair has none: it is left as it is), else Image.
func (r *run) imageFor(h, slot string) (string, bool) {
	if r.e.Images == nil {
		return r.e.Image, true
	}
	img, ok := r.e.Images[PairKey(h, slot)]
	return img, ok && img != ""
}

// PairKey is the key of a (host, slot) pair in Executor.Images.
func PairKey(host, slot string) string { return host + "/" + slot }

// imagesOf is the distinct images h is asked for, in slot order.
func (r *run) imagesOf(h string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range r.slots {
		if img, ok := r.imageFor(h, s); ok && !seen[img] {
			seen[img] = true
			out = append(out, img)
		}
	}
	return out
}

// prepull has every host of hosts pull its image(s), PrepullConcurrency at
// once, before anything is drained. A host that cannot get one fails the
// rollout with ErrPrepull, every host named. keep(h) says whose
// connection stays open (the first batch's); the others are closed again.
func (r *run) prepull(ctx context.Context, hosts []string, keep func(string) bool) error {
	workers := r.e.PrepullConcurrency
	if workers <= 0 {
		workers = DefaultPrepullConcurrency
	}
	t0 := time.Now()
	r.log.Info("prepull", "hosts", len(hosts), "concurrency", workers)
	errs := make([]error, len(hosts))
	var mu sync.Mutex
	have := 0
	inPool(len(hosts), workers, func(i int) {
		h := hosts[i]
		detail, err := r.pullOn(ctx, h)
		if keep == nil || !keep(h) || err != nil {
			r.conns.release(h)
		}
		mu.Lock()
		if err == nil {
			have++
		}
		n := have
		mu.Unlock()
		r.emit(Event{Kind: EventPrepull, Host: h, Hosts: n, Steps: len(hosts), Detail: detail, Err: errorUnless(err)})
		if err != nil {
			errs[i] = fmt.Errorf("host %s: %w", h, err)
		}
	})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrPrepull, context.Cause(ctx))
	}
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	r.log.Info("prepull done", "hosts", len(hosts), "failed", len(failed), "duration", time.Since(t0))
	if len(failed) > 0 {
		return fmt.Errorf("%w (%d of %d hosts):%s", ErrPrepull, len(failed), len(hosts), listErrors(failed))
	}
	return nil
}

// pullOn has h pull each of its images, within StepTimeout each. The
// error does not name h (the caller does).
func (r *run) pullOn(ctx context.Context, h string) (string, error) {
	a, err := r.conns.get(ctx, h)
	if err != nil {
		return "", err
	}
	fa, ok := a.(FleetAgent)
	if !ok {
		return "", errors.New("its agent cannot pull ahead (an earlier haroll): upgrade it, or set prepull: false")
	}
	detail := ""
	for _, img := range r.imagesOf(h) {
		pctx, cancel := within(ctx, r.e.StepTimeout)
		t0 := time.Now()
		last, err := fa.Pull(pctx, img, r.fence, r.e.Origin+" (prepull)", nil)
		timedOut := pctx.Err() != nil && ctx.Err() == nil
		cancel()
		if timedOut {
			return "", fmt.Errorf("image %s not pulled within step_timeout %s (the agent stopped its pull; nothing was changed): %w", img, r.e.StepTimeout, err)
		}
		if predatesFleetOps(err) {
			return "", errors.New("its agent cannot pull ahead (an earlier haroll): upgrade it, or set prepull: false")
		}
		if err != nil {
			return "", err // the agent's error names the image
		}
		if detail != "" {
			detail += "; "
		}
		if last.GetAlready() {
			detail += img + " already there"
		} else {
			detail += fmt.Sprintf("%s pulled in %s", img, time.Since(t0).Round(time.Millisecond))
		}
	}
	return detail, nil
}

// rollbackEarlier puts every pair of the batches up to and including
// upto that this rollout replaced back on the image it ran before, after
// failures passed max_failures with on_failure: rollback. It goes host
// batch by host batch (RollbackBatch, default the whole set), slot by
// slot, each call a normal redeploy (the agent's per-slot rules hold: a
// slot is drained only when the backend can do without it), start-first
// where the slot allows it. It returns how many hosts are wholly back.
func (r *run) rollbackEarlier(ctx context.Context, plan Plan, upto int) int {
	type undo struct {
		host string
		si   int
		old  string
	}
	var hosts []string
	undos := map[string][]undo{}
	for bi := 0; bi <= upto && bi < len(plan.Batches); bi++ {
		for _, h := range plan.Batches[bi].Hosts {
			for si, sr := range r.results[h] {
				if sr.Result != ResultReplaced {
					continue
				}
				old := sr.OldImage
				if old == "" {
					old = r.statusImage(h, r.slots[si])
				}
				newImage, _ := r.imageFor(h, r.slots[si])
				if old == "" || old == newImage {
					r.mu.Lock()
					r.results[h][si].Error = "on_failure rollback: the image it ran before is not known: put it back by hand"
					r.mu.Unlock()
					continue
				}
				if len(undos[h]) == 0 {
					hosts = append(hosts, h)
				}
				undos[h] = append(undos[h], undo{h, si, old})
			}
		}
	}
	if len(hosts) == 0 {
		return 0
	}
	size := r.e.RollbackBatch.Of(len(hosts))
	if size <= 0 {
		size = len(hosts)
	}
	r.log.Warn("on_failure rollback: putting earlier batches back", "hosts", len(hosts), "batch", size)
	back := 0
	for start := 0; start < len(hosts); start += size {
		chunk := hosts[start:min(start+size, len(hosts))]
		ok := map[string]bool{}
		for _, h := range chunk {
			ok[h] = true
		}
		for si, slot := range r.slots {
			if ctx.Err() != nil || r.checkLease(ctx) != nil {
				return back
			}
			var wg sync.WaitGroup
			for _, h := range chunk {
				for _, u := range undos[h] {
					if u.si != si {
						continue
					}
					wg.Go(func() {
						at := Event{Slot: slot}
						req := &agentpb.RedeployRequest{Image: u.old, Slots: []string{slot}, Origin: r.e.Origin + " (on_failure rollback)",
							Fence: r.undoFence(), PreferStartFirst: true}
						err := r.putBack(ctx, at, h, req)
						r.mu.Lock()
						sr := &r.results[h][si]
						if err != nil {
							ok[h] = false
							sr.Error = fmt.Sprintf("on_failure rollback to %s failed: %v; put it back by hand: `haroll redeploy --image %s --slot %s` on that host", u.old, err, u.old, slot)
						} else {
							sr.Result, sr.Error = ResultRolledBack, "on_failure rollback: back on "+u.old
							sr.Image = u.old
						}
						res := *sr
						r.mu.Unlock()
						r.w.record(PairResult{Host: h, Slot: slot, Result: res.Result, Error: res.Error, Finished: time.Now(), OldImage: u.old})
						ev := at
						ev.Kind, ev.Host, ev.Result, ev.Detail, ev.Err = EventRollback, h, res.Result, "back to "+u.old, errorUnless(err)
						r.emit(ev)
					})
				}
			}
			wg.Wait()
		}
		for _, h := range chunk {
			if ok[h] {
				back++
			}
		}
	}
	return back
}

// predatesFleetOps says whether err is an agent's answer that it does not
// know the call (gRPC Unimplemented): an agent of an earlier haroll.
func predatesFleetOps(err error) bool { return status.Code(err) == codes.Unimplemented }

// endsClaims says whether the run's end ends its hosts' claims: it will not
// be resumed (refused, or ended on its own). A run cut short (cancelled, its
// state not written, its lock lost) leaves them for the resume, or for
// claim_ttl.
func (r *run) endsClaims(ctx context.Context) bool {
	return ctx.Err() == nil && r.lockLost() == nil && r.w.failed() == nil && !r.unfinished
}

// pauseOnFailure waits, after failures passed max_failures with on_failure:
// pause, for `haroll rollout promote` (the rollout goes on: "" is
// returned) or `haroll rollout abort` (it stops: why is returned). The
// pause is recorded first, so that the decision is accepted from another
// shell and a resume waits again.
func (r *run) pauseOnFailure(ctx context.Context, failed, hosts int) string {
	why := fmt.Sprintf("%d of %d hosts failed, more than max_failures %s", failed, hosts, r.e.MaxFailures)
	if err := r.w.pause(why); err != nil {
		return why + "; the pause could not be recorded: " + err.Error()
	}
	r.log.Warn("on_failure pause: waiting for `haroll rollout promote` (go on) or `haroll rollout abort` (stop)", "why", why)
	r.emit(Event{Kind: EventPaused, Detail: why + ": `haroll rollout promote` goes on, `haroll rollout abort` stops"})
	t := time.NewTicker(decisionPoll)
	defer t.Stop()
	for {
		d, err := r.takePauseDecision()
		if errors.Is(err, ErrState) {
			return why + "; the decision could not be recorded: " + err.Error()
		}
		if err != nil {
			r.log.Warn("reading the decision", "error", err)
		}
		switch d {
		case DecisionPromote:
			r.emit(Event{Kind: EventPaused, Detail: "promoted: the rollout goes on"})
			return ""
		case DecisionAbort:
			return why + "; aborted during the pause"
		}
		select {
		case <-ctx.Done():
			return "cancelled during the on_failure pause: " + context.Cause(ctx).Error()
		case <-t.C:
		}
	}
}

// takePauseDecision takes a promote or abort written for the paused
// rollout and records the pause as over, in one step under the decision
// lock (as decide does for a canary): a decision Decide accepted is the one
// taken, and once the pause is recorded as over a later one is refused,
// never left for a later canary or pause to take.
func (r *run) takePauseDecision() (string, error) {
	release, err := r.lockDecisions()
	if err != nil {
		return "", err
	}
	defer release()
	d, err := r.peekDecision(DecisionPromote, DecisionAbort)
	if d.Decision == "" || err != nil {
		return "", err
	}
	if err := r.w.pause(""); err != nil {
		return "", err // the decision stays, for a --resume
	}
	if err := r.dropDecision(d); err != nil {
		r.log.Warn("removing the decision taken", "error", err)
	}
	return d.Decision, nil
}

// EventPaused: the rollout waits for a decision after its failures passed
// max_failures (on_failure: pause), or goes on (Detail).
const EventPaused EventKind = "paused"

// onFailureRollback records that the rollout puts the pairs it replaced in
// the batches up to upto back (a resume goes on with it), does it, and
// returns why the rollout stopped, and the hosts wholly back.
func (r *run) onFailureRollback(ctx context.Context, plan Plan, upto int, why string) (string, int) {
	if err := r.w.rollingBack(why); err != nil {
		return why + "; the on_failure rollback did not start: " + err.Error(), 0
	}
	n := r.rollbackEarlier(ctx, plan, upto)
	return why + fmt.Sprintf("; on_failure rollback put %d host(s) back on their old image", n), n
}

// claimRenewal is how often the claims of the rollout's hosts are renewed
// while it runs: a third of ClaimTTL (default: the agent's hour), so that
// a host waiting for a later batch, a canary's window or a pause stays
// claimed however long the rollout takes.
func (r *run) claimRenewal() time.Duration {
	ttl := r.e.ClaimTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	return ttl / 3
}

// renewClaims claims hosts again every claimRenewal until stop is called
// (the run's end), preflightConcurrency at a time, each on a connection of
// its own. A host that cannot be reached is left to the rollout's own
// calls (its claim lapses only claim_ttl after the last of them).
func (r *run) renewClaims(ctx context.Context, hosts []string) (stop func()) {
	if r.fence == nil || len(hosts) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.claimRenewal())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			r.claimAll(ctx, hosts)
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

func (r *run) claimAll(ctx context.Context, hosts []string) {
	inPool(len(hosts), preflightConcurrency, func(i int) {
		if ctx.Err() != nil { // the run ended: the rest are not asked
			return
		}
		cctx, cancel := within(ctx, r.e.ConnectTimeout)
		defer cancel()
		a, err := r.conns.dialNow(cctx, hosts[i])
		if err == nil {
			err = r.claim(cctx, hosts[i], a)
			r.conns.closeAgent(a)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Debug("claim not renewed", "host", hosts[i], "error", err)
		}
	})
}
