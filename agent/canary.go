package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
	"github.com/haroll/haroll/runtime"
)

// canaryFile records the slots that run a canary: a new image at a share of
// the slot's weight. It is written before the reduced weight is set, so the
// whole weight is never forgotten, and kept across restarts of the agent: a
// canary is a deliberate state that only Promote or a later redeploy ends.
const canaryFile = "canary.json"

// Canary is one slot running a canary.
type Canary struct {
	Slot  string `json:"slot"`
	Image string `json:"image"`
	// FullWeight is the slot's weight before the canary, given back by
	// Promote; Weight is the share it runs at.
	FullWeight int       `json:"full_weight"`
	Weight     int       `json:"weight"`
	Since      time.Time `json:"since"`
	// Surge, for a blue/green slot, is the journal entry of the surge that
	// brought the canary up: its new side (Pair.Idle) serves at Weight
	// beside the old side (Pair.Live), which keeps FullWeight and its
	// container. Promote retires the old side; a redeploy of the old image
	// undoes the new side (pair_canary.go).
	Surge *Entry `json:"surge,omitempty"`
}

// CanaryWeight is percent of weight, rounded up and at least 1, so a canary
// of a server that takes traffic always takes some. A server at weight 0
// (drained by the operator) stays at 0: a canary never gives traffic to a
// server that had none.
func CanaryWeight(weight, percent int) int {
	if weight <= 0 {
		return 0
	}
	return max(1, (weight*percent+99)/100)
}

// checkCanaryWeight refuses (ErrInvalidCanary) a canary whose share is the
// server's whole weight: such a canary takes all the traffic the server
// took before, which is no canary. A weight so small that the share is
// rounded up past what was asked is only logged.
func (a *Agent) checkCanaryWeight(slot string, full, percent, final int) error {
	switch {
	case full == 0:
		a.log.Warn("canary of a server at weight 0: it stays at weight 0 and gets no traffic, so the canary analysis sees no request from it",
			"slot", slot, "weight", full, "canary_percent", percent)
	case final >= full:
		// The smallest weight at which percent is an exact share.
		exact := 100 / gcd(100, percent)
		return fmt.Errorf("slot %s: weight %d at %d%% is a canary weight of %d, the server's whole weight, so the new image would take all the traffic the server takes now: "+
			"raise the server's weight in HAProxy (and the other servers' in proportion; at weight %d, %d%% is %d), or run the canary at its whole weight on purpose with --canary-weight 100%% (canary.weight: 100%%): %w",
			slot, full, percent, final, exact, percent, exact*percent/100, ErrInvalidCanary)
	case final*100 > full*percent+full: // more than a point above what was asked
		a.log.Warn("canary share rounded up: the smallest share above 0 this weight allows",
			"slot", slot, "weight", full, "canary_percent", percent, "canary_weight", final, "share_percent", final*100/full)
	}
	return nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// canaries reads the canary records, by slot; a missing file is none.
func (a *Agent) canaries() (map[string]Canary, error) {
	path := filepath.Join(a.cfg.StateDir, canaryFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Canary{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("canary records: %w", err)
	}
	var list []Canary
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("canary records %s are corrupt (%v): check the slots' weights by hand, then remove the file", path, err)
	}
	out := make(map[string]Canary, len(list))
	for _, c := range list {
		out[c.Slot] = c
	}
	return out, nil
}

// setCanary records (c.Weight > 0) or forgets (c.Weight == 0) slot c.Slot's
// canary, atomically.
func (a *Agent) setCanary(c Canary) error {
	all, err := a.canaries()
	if err != nil {
		return err
	}
	if _, had := all[c.Slot]; !had && c.Weight == 0 {
		return nil
	}
	if c.Weight == 0 {
		delete(all, c.Slot)
	} else {
		all[c.Slot] = c
	}
	path := filepath.Join(a.cfg.StateDir, canaryFile)
	if len(all) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("canary records: %w", err)
		}
		return atomicfile.SyncDir(a.cfg.StateDir)
	}
	list := make([]Canary, 0, len(all))
	for _, s := range a.cfg.Slots { // config order, for a stable file
		if c, ok := all[s.Name]; ok {
			list = append(list, c)
		}
	}
	if err := atomicfile.WriteJSON(path, list); err != nil {
		return fmt.Errorf("canary records: %w", err)
	}
	return nil
}

// SlotWeight is a slot's weight as Promote left it.
type SlotWeight struct {
	Slot   string `json:"slot"`
	Weight int    `json:"weight"`
}

// Promote gives slots that run a canary their whole weight back and forgets
// their canary; empty slots means every slot that runs one. It takes the
// host lock (ErrBusy while a replacement runs). A requested slot that is not
// configured is ErrUnknownSlot; one that runs no canary is ErrNoCanary, and
// nothing is changed. fence, set by a fleet rollout, is checked first
// (CheckFence: ErrFenced).
func (a *Agent) Promote(ctx context.Context, slots []string, origin string, fence *Fence) ([]SlotWeight, error) {
	if _, err := a.selectSlots(slots); err != nil {
		return nil, err
	}
	if fence != nil {
		if err := a.CheckFence(*fence); err != nil {
			return nil, err
		}
	}
	lock, err := AcquireLock(a.cfg.StateDir, fmt.Sprintf("pid %d: %s: promote since %s", os.Getpid(), origin, time.Now().Format(time.RFC3339)))
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	// A blue/green redeploy cut off before (a surge or a retirement, a
	// canary's undo) is settled first, as a redeploy does: a promotion
	// beside a pending half would act on a canary record it changes.
	if did, err := a.recoverPairs(ctx); err != nil {
		return nil, fmt.Errorf("a blue/green redeploy cut off before could not be recovered, so nothing was promoted: %w; `haroll recover --status` shows it", err)
	} else if did != "" {
		a.log.Warn("recovered before the promotion", "did", did)
	}
	all, err := a.canaries()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, s := range slots {
		if _, ok := all[s]; !ok {
			errs = append(errs, fmt.Errorf("slot %s: %w", s, ErrNoCanary))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var out []SlotWeight
	for _, s := range a.cfg.Slots {
		c, ok := all[s.Name]
		if !ok || (len(slots) > 0 && !slices.Contains(slots, s.Name)) {
			continue
		}
		if c.Surge != nil && !s.pair() {
			return out, fmt.Errorf("slot %s: its canary is a blue/green one (%s beside %s), but the slot has no alt in the agent's config: put the alt back to promote it", s.Name, c.Surge.Pair.Idle, c.Surge.Pair.Live)
		}
		if c.Surge != nil {
			if err := a.promotePair(ctx, s, c); err != nil {
				return out, fmt.Errorf("slot %s: promote: %w", s.Name, err)
			}
		} else {
			if err := a.retry(ctx, a.log, "promote "+s.Name, func() error {
				return a.haproxy.SetWeight(ctx, s.Backend, s.Server, c.FullWeight)
			}); err != nil {
				return out, fmt.Errorf("slot %s: promote to weight %d: %w", s.Name, c.FullWeight, err)
			}
			if err := a.setCanary(Canary{Slot: s.Name}); err != nil {
				return out, err
			}
		}
		a.log.Info("canary promoted", "slot", s.Name, "image", c.Image, "weight", c.FullWeight)
		out = append(out, SlotWeight{Slot: s.Name, Weight: c.FullWeight})
	}
	return out, nil
}

// SlotCounters are one slot's HAProxy traffic counters, and whether it runs
// a canary.
type SlotCounters struct {
	Slot    string
	Backend string
	Canary  bool
	Image   string // the canary's image; "" for a slot that runs none
	Weight  int
	runtime.Counters
	Err string // the counters could not be read
}

// Counters reads every slot's traffic counters from HAProxy. A slot that
// cannot be read carries the error in Err; Counters fails only when the
// canary records cannot be read.
func (a *Agent) Counters(ctx context.Context) ([]SlotCounters, error) {
	all, err := a.canaries()
	if err != nil {
		return nil, err
	}
	out := make([]SlotCounters, 0, len(a.cfg.Slots))
	for _, s := range a.cfg.Slots {
		c, canary := all[s.Name]
		sc := SlotCounters{Slot: s.Name, Backend: s.Backend, Canary: canary, Image: c.Image}
		server := s.Server
		switch {
		case c.Surge != nil: // a blue/green canary: its new side's
			server = c.Surge.Pair.Idle
		case s.pair(): // the live side's; the idle one serves nothing
			if live, err := a.liveSide(ctx, s); err == nil {
				server = live
			}
		}
		if srv, err := a.haproxy.Server(ctx, s.Backend, server); err != nil {
			sc.Err = err.Error()
		} else {
			sc.Counters, sc.Weight = srv.Counters, srv.Weight
		}
		out = append(out, sc)
	}
	return out, nil
}
