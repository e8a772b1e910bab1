package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
)

// Agent replaces the containers of one host's slots.
type Agent struct {
	cfg     Config
	haproxy HAProxy
	docker  Docker
	log     *slog.Logger
	// stateMu serialises saves of the servers' states (saveServerState):
	// an older snapshot must never be renamed over a newer one.
	stateMu sync.Mutex
	// poll is how often HAProxy and the probe are asked while waiting.
	poll time.Duration
	// grace bounds the final restore and, beyond health.timeout, a rollback
	// (rollbackGrace).
	grace time.Duration
	// probe is the agent's own check of a container's address.
	probe func(ctx context.Context, addr address) error
	// running says what this process is replacing, "" when idle.
	running atomic.Pointer[string]
	// observer, when set, sees every phase and slot outcome (WithObserver).
	observer Observer
	// settle is how long recovery gives a create cut off in flight
	// (createSettle).
	settle time.Duration
	// journalFault, in tests, makes a journal write fail.
	journalFault func(Entry) error
	// pullEvery is how often an image pull's progress is logged and sent
	// to the caller (pullReportEvery).
	pullEvery time.Duration
	// master is HAProxy's master CLI when haproxy.master_socket is set
	// (WithMaster), and procfs where /proc is: how old workers are followed
	// after a reload (workers.go).
	master MasterCLI
	procfs procFS
	// now is the clock of claims (time.Now; tests move it).
	now func() time.Time
	// pullProgressEvery is how often Pull sends its caller the progress
	// of the pull (pullProgressEvery).
	pullProgressEvery time.Duration
}

// New returns an agent for a validated cfg.
func New(cfg Config, haproxy HAProxy, docker Docker, log *slog.Logger, opts ...Option) *Agent {
	a := &Agent{cfg: cfg, haproxy: haproxy, docker: docker, log: log, poll: 25 * time.Millisecond, grace: rollbackGrace, settle: createSettle, pullEvery: pullReportEvery, procfs: "/proc",
		now: time.Now, pullProgressEvery: pullProgressEvery}
	a.probe = a.probeApp
	for _, o := range opts {
		o(a)
	}
	return a
}

// Request asks for the slots' containers to run Image.
type Request struct {
	Image string
	// Slots limits the replacement to these slot names, in config order;
	// empty means every slot.
	Slots []string
	// Force replaces slots already running the image.
	Force bool
	// Origin says who asks ("redeploy by root"), shown to a caller that
	// finds the host busy.
	Origin string
	// CanaryPercent, in 1..99, makes each replaced slot a canary: it gets
	// that share of its weight (CanaryWeight) until Promote, or a later
	// redeploy of the slot, gives it the whole weight back. 0: no canary.
	CanaryPercent int
	// CallerGone, when not nil, is closed when whoever asked went away (a
	// gRPC caller's stream ended). Until the image is on the host nothing
	// is changed, so the image pull stops then and the request fails with
	// ErrPullCancelled; once a slot is touched, the replacement goes on to
	// its end under Redeploy's ctx, caller or not.
	CallerGone <-chan struct{}
	// Fence, set by a fleet rollout, is checked before anything else is
	// (CheckFence), and again before the first slot and each later one is
	// touched; nil for a person's redeploy, which a claimed host refuses
	// unless BreakClaim.
	Fence      *Fence
	BreakClaim bool
	// MaxSurge, when > 0, overrides the config's max_surge for this
	// request: how many blue/green slots may be in their surge at once.
	MaxSurge int
	// Caller is who called, as the transport tells: the client
	// certificate's name, or "local" (the unix socket, the CLI in-process).
	// The history records it beside Origin.
	Caller string
}

// Redeploy replaces the requested slots one at a time, in config order, and
// stops at the first slot that fails (after rolling it back). Every check
// that does not need to touch a slot runs first: a bad request returns
// ErrUnknownSlot, ErrInvalidImage, ErrImageNotAllowed or ErrPreflight and
// changes nothing; another replacement on the host is ErrBusy. The image
// is pulled, when it is not on the host, before any slot is touched, within
// docker.pull_timeout (ErrPullTimeout), and stops when ctx ends or
// req.CallerGone is closed (ErrPullCancelled); either changes nothing and
// frees the host at once. events, when not nil, receives each finished
// phase, and every few seconds the progress of the pull (Event.Progress).
// The report covers every requested slot, also when an error is returned.
// The agent's Observer, if any, sees every event and every slot's outcome.
//
// A request with a Fence whose token is lower than one the host has seen
// wraps ErrFenced; one without a Fence, on a host a fleet rollout claims,
// wraps ErrClaimed unless it sets BreakClaim. Either changes nothing. The
// fence is checked when the request comes, again once the image is on the
// host (a later rollout may have reached the host during the pull: ErrFenced,
// nothing changed, no slot in the report), and again before each slot after
// the first: there the slots before stay replaced, and this one and the
// rest are not_run, each with the error. Every slot result but not_run is
// recorded in the host's history (History) before Redeploy returns.
func (a *Agent) Redeploy(ctx context.Context, req Request, events func(Event)) (Report, error) {
	begin := time.Now()
	rep := Report{Image: req.Image}
	events = a.observed(events)
	defer func() { a.observeReport(rep) }()
	slots, err := a.selectSlots(req.Slots)
	if err != nil {
		return rep, err
	}
	if req.CanaryPercent < 0 || req.CanaryPercent > 99 {
		return rep, fmt.Errorf("%w: %d%%: want 1..99 (or 0 for no canary)", ErrInvalidCanary, req.CanaryPercent)
	}
	if req.Fence != nil {
		err = a.CheckFence(*req.Fence)
	} else {
		err = a.checkClaim(req)
	}
	if err != nil {
		return rep, err
	}
	lock, err := AcquireLock(a.cfg.StateDir, fmt.Sprintf("pid %d: %s of %s since %s",
		os.Getpid(), req.Origin, req.Image, begin.Format(time.RFC3339)))
	if err != nil {
		return rep, err
	}
	defer lock.Release()
	wedged, done, err := a.recoverOrTakeOver(ctx, slots)
	if err != nil {
		return rep, err
	} else if done != "" {
		events(Event{Slot: "(journal)", Phase: PhaseRecover, Start: begin, Detail: done})
	}
	doing := fmt.Sprintf("%s of %s since %s", req.Origin, req.Image, begin.Format(time.RFC3339))
	a.running.Store(&doing)
	defer a.running.Store(nil)
	plans, err := a.preflight(ctx, req, slots, wedged, events)
	if err != nil {
		return rep, err
	}
	// The fence was checked before the host lock and the pull, which may
	// have taken minutes: a later rollout may have reached the host since.
	if req.Fence != nil {
		if err := a.recheckFence(*req.Fence); err != nil {
			return rep, fmt.Errorf("%w; the later rollout reached the host while this request waited for the host lock or pulled %s; nothing was changed", err, req.Image)
		}
	}
	// A wedged slot is taken over first: the journal holds its only record,
	// which any other slot's replacement would overwrite; if the take-over
	// fails, no other slot runs.
	slices.SortStableFunc(plans, func(x, y plan) int {
		return cmp.Compare(boolInt(y.takeover != nil), boolInt(x.takeover != nil))
	})
	if len(plans) > 0 && plans[0].track.mode == trackOff {
		events(Event{Slot: "(haproxy)", Phase: PhasePreflight, Start: time.Now(), Detail: plans[0].track.why})
	}
	// Phases of two slots (one replaced, the other's old container removed)
	// may report at once.
	var eventsMu sync.Mutex
	caller := events
	events = func(e Event) {
		eventsMu.Lock()
		defer eventsMu.Unlock()
		caller(e)
	}
	cleanup := a.startCleaner(events)
	defer cleanup.close()
	hist := &history{a: a}
	maxSurge := a.cfg.MaxSurge
	if req.MaxSurge > 0 {
		maxSurge = req.MaxSurge
	}
	results := make([]*replaceResult, len(plans))
	starts := make([]time.Time, len(plans))
	// Every slot's result goes into the history as soon as it ends (a
	// pair's after its retirement): a crash later must not lose it.
	var histMu sync.Mutex
	record := func(p plan, r replaceResult, start time.Time) {
		histMu.Lock()
		defer histMu.Unlock()
		a.recordHistory(hist, req, p, r, start)
	}
	// A pair's save of the servers' states also writes those of a slot
	// replaced beside it (drained, in MAINT): each such slot saves them again
	// once it is done, and so does the end of the redeploy.
	stateFiles := pairStateFiles(plans)
	pairs := newPairRuns(maxSurge, cleanup, func(i int, r replaceResult) { record(plans[i], r, starts[i]) })
	var failed error
	var notRun string // why the slots left are not run, when a fence stops them
	var replaced []string
	for i, p := range plans {
		surge := p.pair != nil && p.canaryPair == nil && !p.skip && failed == nil
		if surge {
			pairs.acquire() // at most max_surge surges at once
		} else {
			pairs.waitSurges() // the other slots run one at a time, after them
		}
		if failed == nil {
			failed = pairs.failed()
		}
		if failed == nil && ctx.Err() != nil {
			failed = ctx.Err() // shutting down: no further slot starts
		}
		if failed == nil && req.Fence != nil && len(replaced)+len(pairs.names()) > 0 {
			// A slot takes minutes: a later rollout may have reached the
			// host during the one before.
			if err := a.recheckFence(*req.Fence); err != nil {
				failed = fmt.Errorf("slot %s: %w; replaced before it: %s; not run: %s", p.slot.Name, err,
					strings.Join(append(replaced, pairs.names()...), ", "), strings.Join(planNames(plans[i:]), ", "))
				notRun = failed.Error()
			}
		}
		if surge && failed != nil {
			pairs.release()
		}
		if failed != nil {
			results[i] = &replaceResult{report: SlotReport{Slot: p.slot.Name, Result: ResultNotRun, Err: notRun}}
			continue
		}
		starts[i] = time.Now()
		if surge {
			pairs.start(ctx, a, i, p, req.Image, events, results)
			continue
		}
		if p.skip {
			events(Event{Slot: p.slot.Name, Phase: PhaseSkip, Start: starts[i], Detail: "already runs " + req.Image})
			results[i] = &replaceResult{report: SlotReport{Slot: p.slot.Name, Result: ResultSkipped, OldContainer: p.old.ID, Weight: p.weight}}
			record(p, *results[i], starts[i])
			continue
		}
		replace := a.replace
		switch {
		case p.takeover != nil:
			replace = a.takeOver
		case p.canaryPair != nil:
			replace = a.undoPairCanary
		}
		r := replace(ctx, p, req.Image, events, cleanup)
		results[i] = &r
		record(p, r, starts[i])
		a.resaveStates(ctx, stateFiles)
		if r.err != nil {
			failed = fmt.Errorf("slot %s: %w", p.slot.Name, r.err)
		} else {
			replaced = append(replaced, p.slot.Name)
		}
	}
	pairs.wait()
	if failed == nil {
		failed = pairs.failed()
	}
	a.resaveStates(ctx, stateFiles)
	for _, r := range results {
		rep.Slots = append(rep.Slots, r.report)
	}
	cleanup.close()
	rep.Total = time.Since(begin)
	return rep, failed
}

// Busy says what replacement runs on the host, in this process or in
// another one holding the host lock; "" when none does.
func (a *Agent) Busy() string {
	if r := a.running.Load(); r != nil {
		return *r
	}
	return LockHolder(a.cfg.StateDir)
}

// Slots returns the configured slots, in order.
func (a *Agent) Slots() []SlotConfig { return slices.Clone(a.cfg.Slots) }

// selectSlots returns the configured slots named in names (all when empty),
// in config order.
func (a *Agent) selectSlots(names []string) ([]SlotConfig, error) {
	if len(names) == 0 {
		return a.cfg.Slots, nil
	}
	var errs []error
	for _, n := range names {
		if !slices.ContainsFunc(a.cfg.Slots, func(s SlotConfig) bool { return s.Name == n }) {
			errs = append(errs, fmt.Errorf("%w %q: configured slots are %v", ErrUnknownSlot, n, a.slotNames()))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var out []SlotConfig
	for _, s := range a.cfg.Slots {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	return out, nil
}

func planNames(plans []plan) []string {
	names := make([]string, len(plans))
	for i, p := range plans {
		names[i] = p.slot.Name
	}
	return names
}

func (a *Agent) slotNames() []string {
	names := make([]string, len(a.cfg.Slots))
	for i, s := range a.cfg.Slots {
		names[i] = s.Name
	}
	return names
}

// validateImage checks the reference syntax and allowed_images.
func (a *Agent) validateImage(image string) error {
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		return fmt.Errorf("%w %q: %v (want e.g. registry.example/app:1.2)", ErrInvalidImage, image, err)
	}
	if !a.cfg.imageAllowed(image) {
		return fmt.Errorf("%w: %q matches none of allowed_images %v", ErrImageNotAllowed, image, a.cfg.AllowedImages)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
