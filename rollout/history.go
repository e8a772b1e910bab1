package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

// HostHistory is one host's answer to a History request.
type HostHistory struct {
	Host    string                  `json:"host"`
	Entries []*agentpb.HistoryEntry `json:"entries,omitempty"`
	Err     error                   `json:"-"`
	Error   string                  `json:"error,omitempty"`
}

// FleetHistory asks every host of hosts for its history (req's filters),
// preflightConcurrency at once, each within timeout. A host that cannot
// answer has Err set; the others are answered whatever becomes of it.
func FleetHistory(ctx context.Context, dial Dial, hosts []string, req *agentpb.HistoryRequest, timeout time.Duration) []HostHistory {
	out := make([]HostHistory, len(hosts))
	inPool(len(hosts), preflightConcurrency, func(i int) {
		out[i] = hostHistory(ctx, dial, hosts[i], req, timeout)
	})
	return out
}

func hostHistory(ctx context.Context, dial Dial, h string, req *agentpb.HistoryRequest, timeout time.Duration) HostHistory {
	hh := HostHistory{Host: h}
	ctx, cancel := within(ctx, timeout)
	defer cancel()
	a, err := dial(ctx, h)
	if err == nil {
		if c, ok := a.(interface{ Close() error }); ok {
			defer c.Close() //nolint:errcheck // a read-only call
		}
		fa, ok := a.(FleetAgent)
		if !ok {
			err = errors.New("its agent keeps no history (an earlier haroll): upgrade it")
		} else {
			var resp *agentpb.HistoryResponse
			if resp, err = fa.History(ctx, req); err == nil {
				hh.Entries = resp.GetEntries()
			}
		}
	}
	if err != nil {
		hh.Err = fmt.Errorf("host %s: history: %w", h, err)
		hh.Error = hh.Err.Error()
	}
	return hh
}

// RollbackPlan is what `haroll rollout rollback` puts back: the last
// rollout found in the agents' history, and each (host, slot) pair it
// replaced with the image the slot ran before it.
type RollbackPlan struct {
	RolloutID string `json:"rollout_id"`
	Token     uint64 `json:"token"`
	Image     string `json:"image"` // what that rollout rolled out
	// Images: PairKey(host, slot) -> the image to go back to.
	Images map[string]string `json:"images"`
	// Hosts with a pair to put back, in the order given.
	Hosts []string `json:"hosts"`
}

// ErrNothingToRollBack: no host's history holds a rollout to undo.
var ErrNothingToRollBack = errors.New("nothing to roll back")

// PlanRollback finds, in the histories of every host, the last fleet
// rollout (the highest fence token of an entry of kind rollout) and, for
// each slot that rollout replaced, the image the slot ran before. A slot
// the rollout did not replace (skipped, rolled back, not reached) is left
// as it is. An unanswered host is an error: its slots cannot be known.
func PlanRollback(hist []HostHistory) (RollbackPlan, error) {
	var errs []error
	var last *agentpb.HistoryEntry
	for _, hh := range hist {
		if hh.Err != nil {
			errs = append(errs, hh.Err)
			continue
		}
		for _, e := range hh.Entries {
			if e.GetKind() != KindRollout || e.GetRolloutId() == "" {
				continue
			}
			if last == nil || e.GetFenceToken() > last.GetFenceToken() {
				last = e
			}
		}
	}
	if len(errs) > 0 {
		return RollbackPlan{}, fmt.Errorf("the history of %d host(s) could not be read, so what they ran is unknown:%s", len(errs), listErrors(errs))
	}
	if last == nil {
		return RollbackPlan{}, fmt.Errorf("%w: no host's history holds a fleet rollout (pass --to IMAGE to roll a given image back out)", ErrNothingToRollBack)
	}
	p := RollbackPlan{RolloutID: last.GetRolloutId(), Token: last.GetFenceToken(), Image: last.GetRequestedImage(), Images: map[string]string{}}
	for _, hh := range hist {
		// Per slot, the first replacement of that rollout (a resume may
		// have asked a slot again: a skip, or a second replacement after an
		// undo) says what the slot ran before it; the slot's newest entry,
		// whatever asked it, says what it runs now.
		first := map[string]*agentpb.HistoryEntry{}
		now := map[string]*agentpb.HistoryEntry{}
		for _, e := range hh.Entries {
			if n := now[e.GetSlot()]; n == nil || e.GetSeq() > n.GetSeq() {
				now[e.GetSlot()] = e
			}
			if e.GetRolloutId() != p.RolloutID || e.GetKind() != KindRollout || e.GetResultCode() != agentpb.SlotResult_SLOT_RESULT_REPLACED {
				continue
			}
			if f := first[e.GetSlot()]; f == nil || e.GetSeq() < f.GetSeq() {
				first[e.GetSlot()] = e
			}
		}
		slots := make([]string, 0, len(first))
		for s := range first {
			slots = append(slots, s)
		}
		sort.Strings(slots)
		for _, s := range slots {
			before := first[s].GetImageBefore()
			if before == "" || before == first[s].GetImageAfter() || now[s].GetImageAfter() == before {
				continue // nothing to put back, or already back (an on_failure or canary rollback)
			}
			p.Images[PairKey(hh.Host, s)] = before
		}
		if slices.ContainsFunc(slots, func(s string) bool { return p.Images[PairKey(hh.Host, s)] != "" }) {
			p.Hosts = append(p.Hosts, hh.Host)
		}
	}
	if len(p.Images) == 0 {
		return p, fmt.Errorf("%w: rollout %s replaced no slot that ran another image before", ErrNothingToRollBack, p.RolloutID)
	}
	return p, nil
}

// ReleaseClaims ends, on every host of hosts, the claim of the rollout
// that held the lock with token, or of an older one (`haroll rollout lock
// release`: its holder is gone, and a person's redeploy should not wait for
// claim_ttl). A host claimed by a newer rollout (one that took the lock
// since) keeps its claim: the agent refuses the request as fenced, which
// counts as kept. It returns how many hosts answered, how many of those
// kept a newer claim, and the errors of the others.
func ReleaseClaims(ctx context.Context, dial Dial, hosts []string, token uint64, timeout time.Duration) (answered, newer int, errs []error) {
	all := make([]error, len(hosts))
	inPool(len(hosts), preflightConcurrency, func(i int) {
		all[i] = releaseClaim(ctx, dial, hosts[i], token, timeout)
	})
	for _, err := range all {
		switch {
		case errors.Is(err, ErrFenced):
			answered++
			newer++
		case err != nil:
			errs = append(errs, err)
		default:
			answered++
		}
	}
	return answered, newer, errs
}

func releaseClaim(ctx context.Context, dial Dial, h string, token uint64, timeout time.Duration) error {
	ctx, cancel := within(ctx, timeout)
	defer cancel()
	a, err := dial(ctx, h)
	if err != nil {
		return fmt.Errorf("host %s: %w", h, err)
	}
	if c, ok := a.(interface{ Close() error }); ok {
		defer c.Close() //nolint:errcheck // nothing to do about it
	}
	fa, ok := a.(FleetAgent)
	if !ok {
		return nil // an agent that keeps no claims
	}
	if _, err := fa.Claim(ctx, &agentpb.ClaimRequest{Fence: &agentpb.Fence{Token: token}, Release: true}); err != nil {
		return fmt.Errorf("host %s: %w", h, err)
	}
	return nil
}
