package rollout

import (
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/go-multierror"
)

// CanaryPolicy says how the canary batch is run and judged. The canary
// batch first replaces its first Slots slots on every canary host, each at
// WeightPercent of its weight; then the canary hosts' HAProxy counters are
// read for Window, and the new servers' error rate is judged against
// MaxErrorRate and the old servers on the same hosts (Judge). A canary that
// passes (and, with Pause, that a person promotes) gets its whole weight
// back and the batch goes on; one that fails, or that a person aborts, is
// rolled back to the old image and the rollout stops, the rest of the fleet
// untouched.
type CanaryPolicy struct {
	// Slots replaced on each canary host before the analysis; the rest of
	// the canary hosts' slots are replaced after the promotion. Keep at
	// least one slot out, so that old servers on the same hosts compare.
	Slots int
	// WeightPercent, in 1..100, is the share of its weight a canary gets.
	WeightPercent int
	Window        time.Duration
	// Interval between two reads of the counters; zero means Window/10.
	Interval time.Duration
	// MaxErrorRate (0..1) is the error rate the new servers may reach;
	// they fail when above it AND above the old servers' rate + Margin.
	MaxErrorRate float64
	Margin       float64
	// MinRequests the new servers must serve in Window to be judged; fewer
	// fails the canary (it cannot be shown good).
	MinRequests int64
	// Pause waits after a passing analysis for Decide's answer.
	Pause bool
}

// Canary phases, as the state file records them.
const (
	CanaryAnalysis    = "analysis"
	CanaryPaused      = "paused"
	CanaryPromoting   = "promoting"
	CanaryPromoted    = "promoted"
	CanaryRollingBack = "rolling_back"
	CanaryRolledBack  = "rolled_back"
)

// Decisions a person gives a paused canary.
const (
	DecisionPromote = "promote"
	DecisionAbort   = "abort"
)

// CanaryState is the canary's progress in the state file.
type CanaryState struct {
	Phase   string  `json:"phase"`
	Verdict string  `json:"verdict,omitempty"`
	New     Traffic `json:"new"`
	Old     Traffic `json:"old"`
	// OldImages is what each canary (host, slot) ran before, for a rollback.
	OldImages map[string]string `json:"old_images,omitempty"` // "host slot" -> image
}

// Traffic is what a group of servers served during the analysis.
type Traffic struct {
	Requests int64 `json:"requests"` // responses + failed connections
	Errors   int64 `json:"errors"`   // 5xx + failed connections + failed responses
	Servers  int   `json:"servers"`
}

// Rate is Errors per request; 0 when nothing was served.
func (t Traffic) Rate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return math.Min(1, float64(t.Errors)/float64(t.Requests))
}

func (t Traffic) String() string {
	return fmt.Sprintf("%d errors / %d requests (%.2f%%) on %d server(s)", t.Errors, t.Requests, 100*t.Rate(), t.Servers)
}

// Judge decides a canary from what the new and the old servers served: it
// fails when the new servers served fewer than MinRequests, or when their
// error rate is above MaxErrorRate and above the old servers' by more than
// Margin. why says which figures decided.
func (p CanaryPolicy) Judge(newT, oldT Traffic) (pass bool, why string) {
	figures := fmt.Sprintf("new: %s; old: %s", newT, oldT)
	switch {
	case newT.Requests < p.MinRequests:
		return false, fmt.Sprintf("the new servers served %d requests, fewer than min_requests %d: not enough traffic to judge (%s)", newT.Requests, p.MinRequests, figures)
	case newT.Rate() > p.MaxErrorRate && newT.Rate() > oldT.Rate()+p.Margin:
		return false, fmt.Sprintf("the new servers' error rate %.2f%% is above max_error_rate %.2f%% and above the old servers' %.2f%% by more than %.2f%% (%s)",
			100*newT.Rate(), 100*p.MaxErrorRate, 100*oldT.Rate(), 100*p.Margin, figures)
	}
	return true, figures
}

// canaryKey names a (host, slot) pair in CanaryState.OldImages.
func canaryKey(host, slot string) string { return host + " " + slot }

// canarySteps is how many of b's steps run before the analysis.
func (p *CanaryPolicy) canarySteps(b Batch) int {
	if p == nil || !b.Canary {
		return -1
	}
	return max(1, min(p.Slots, len(b.Steps)))
}

// checkWeights refuses, before any host is touched, a canary whose share
// of a canary slot's weight (as its agent reported it at the preflight)
// would be that whole weight: the new image would take all the traffic the
// server takes now. The agent refuses it too, but only once the canary
// batch runs, after other canary slots may have been replaced. A server at
// weight 0 takes none and stays at 0 (the agent's canary gives it no
// traffic); the analysis counts it as a new server that served nothing.
func (r *run) checkWeights(plan Plan) error {
	p := r.e.Canary
	if p == nil || p.WeightPercent >= 100 {
		return nil
	}
	var problems *multierror.Error
	for _, b := range plan.Batches {
		k := p.canarySteps(b)
		if k < 0 {
			continue
		}
		for _, st := range b.Steps[:k] {
			for _, h := range st.Hosts {
				w := r.statusWeight(h, st.Slot)
				// As the agent computes it (agent.CanaryWeight): rounded up, at least 1.
				if share := max(1, (w*p.WeightPercent+99)/100); w > 0 && share >= w {
					problems = multierror.Append(problems, fmt.Errorf("host %s slot %s: weight %d at %d%% is a canary weight of %d, the server's whole weight, so it would be no canary: "+
						"raise the servers' weights in HAProxy (at weight %d, %d%% is %d), or run the canary at its whole weight on purpose with --canary-weight 100%% (canary.weight: 100%%)",
						h, st.Slot, w, p.WeightPercent, share, 100/gcd(100, p.WeightPercent), p.WeightPercent, p.WeightPercent/gcd(100, p.WeightPercent)))
				}
			}
		}
	}
	if problems.ErrorOrNil() == nil {
		return nil
	}
	problems.ErrorFormat = listErrors
	return fmt.Errorf("%w: %w", ErrPreflight, problems)
}

// statusWeight is slot's whole weight on h as the preflight's status said
// (its full weight when it runs a canary); 0 if unknown.
func (r *run) statusWeight(h, slot string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.statuses[h].GetSlots() {
		if s.GetSlot() == slot {
			if s.GetCanary() {
				return int(s.GetFullWeight())
			}
			return int(s.GetWeight())
		}
	}
	return 0
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
