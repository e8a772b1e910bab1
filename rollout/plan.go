package rollout

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidSize is returned for a batch, canary or threshold that is not a
// positive whole count ("3") or a whole percentage in 1..100 ("35%").
var ErrInvalidSize = errors.New("invalid size")

// ErrInvalidPlan is returned by Plan for inputs no plan can be made from:
// no host, no slot, a duplicate, or no batch size.
var ErrInvalidPlan = errors.New("invalid plan")

// Size is how many hosts a batch holds: a count, or a share of the fleet.
// The zero Size means "none" (used for an absent canary).
type Size struct {
	count   int
	percent int
}

// ParseSize reads "N" (a count of hosts, N >= 1) or "P%" (a whole
// percentage of the fleet, 1..100). Anything else wraps ErrInvalidSize.
func ParseSize(s string) (Size, error) {
	n, pct, err := parseAmount(s)
	if err != nil {
		return Size{}, err
	}
	if n == 0 {
		return Size{}, fmt.Errorf("%w %q: must be at least 1 host or 1%%", ErrInvalidSize, s)
	}
	if pct {
		return Size{percent: n}, nil
	}
	return Size{count: n}, nil
}

// parseAmount reads a non-negative whole number, optionally followed by %
// (then at most 100).
func parseAmount(s string) (n int, pct bool, err error) {
	t := strings.TrimSpace(s)
	if strings.HasSuffix(t, "%") {
		pct = true
		t = strings.TrimSuffix(t, "%")
	}
	if t == "" || strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false, fmt.Errorf("%w %q: want a whole number of hosts (3) or a whole percentage (35%%)", ErrInvalidSize, s)
	}
	n, err = strconv.Atoi(t)
	if err != nil {
		return 0, false, fmt.Errorf("%w %q: %v", ErrInvalidSize, s, err)
	}
	if pct && n > 100 {
		return 0, false, fmt.Errorf("%w %q: a percentage is at most 100%%", ErrInvalidSize, s)
	}
	return n, pct, nil
}

// IsZero reports whether s is the zero Size ("none").
func (s Size) IsZero() bool { return s.count == 0 && s.percent == 0 }

// String gives the size back the way ParseSize reads it; "" for zero.
func (s Size) String() string {
	switch {
	case s.percent > 0:
		return strconv.Itoa(s.percent) + "%"
	case s.count > 0:
		return strconv.Itoa(s.count)
	}
	return ""
}

// Of is the number of hosts s means in a fleet of n: ceil(share × n) and at
// least 1 for a share, a count capped at n; 0 for the zero Size or n == 0.
func (s Size) Of(n int) int {
	if n <= 0 || s.IsZero() {
		return 0
	}
	k := s.count
	if s.percent > 0 {
		k = (s.percent*n + 99) / 100
	}
	return max(1, min(k, n))
}

// Strategy says how hosts are grouped into batches.
type Strategy struct {
	// Batch is the size of every batch, as a share of (or a count out of)
	// the whole inventory.
	Batch Size
	// Canary, when not zero, is a first batch of its own size; its hosts are
	// not repeated in later batches.
	Canary Size
}

// Plan is the ordered batches of a rollout.
type Plan struct {
	Batches []Batch `json:"batches"`
}

// Batch is a group of hosts rolled together, step by step. A batch starts
// only when the one before it ended.
type Batch struct {
	Canary bool     `json:"canary,omitempty"`
	Hosts  []string `json:"hosts"`
	Steps  []Step   `json:"steps"`
}

// Step is one slot replaced on every host of a batch in parallel. A host
// appears at most once per step, so at most one of its slots is out at once.
type Step struct {
	Slot  string   `json:"slot"`
	Hosts []string `json:"hosts"`
}

// NewPlan groups hosts into batches, in inventory order, with one step per
// slot, in slot order. It does no I/O. Empty or duplicated hosts or slots,
// or a zero Strategy.Batch, wrap ErrInvalidPlan.
func NewPlan(hosts, slots []string, s Strategy) (Plan, error) {
	if err := checkNames("host", hosts); err != nil {
		return Plan{}, err
	}
	if err := checkNames("slot", slots); err != nil {
		return Plan{}, err
	}
	if s.Batch.IsZero() {
		return Plan{}, fmt.Errorf("%w: no batch size", ErrInvalidPlan)
	}
	var p Plan
	rest := hosts
	if n := s.Canary.Of(len(hosts)); n > 0 {
		p.Batches = append(p.Batches, newBatch(rest[:n], slots, true))
		rest = rest[n:]
	}
	size := s.Batch.Of(len(hosts))
	for len(rest) > 0 {
		n := min(size, len(rest))
		p.Batches = append(p.Batches, newBatch(rest[:n], slots, false))
		rest = rest[n:]
	}
	return p, nil
}

func newBatch(hosts, slots []string, canary bool) Batch {
	b := Batch{Canary: canary, Hosts: append([]string(nil), hosts...)}
	for _, slot := range slots {
		b.Steps = append(b.Steps, Step{Slot: slot, Hosts: append([]string(nil), hosts...)})
	}
	return b
}

func checkNames(kind string, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no %s", ErrInvalidPlan, kind)
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" {
			return fmt.Errorf("%w: an empty %s name", ErrInvalidPlan, kind)
		}
		if seen[n] {
			return fmt.Errorf("%w: %s %q is listed twice", ErrInvalidPlan, kind, n)
		}
		seen[n] = true
	}
	return nil
}

// Hosts is the number of hosts the plan covers.
func (p Plan) Hosts() int {
	n := 0
	for _, b := range p.Batches {
		n += len(b.Hosts)
	}
	return n
}

// Threshold is how many failed hosts a rollout tolerates before it stops
// starting batches: a count or a share of the fleet. The zero Threshold
// tolerates none.
type Threshold struct {
	count   int
	percent int
	isPct   bool
}

// ParseMaxFailures reads "N" (failed hosts tolerated, N >= 0) or "P%"
// (0..100, of the hosts in the plan). Anything else wraps ErrInvalidSize.
func ParseMaxFailures(s string) (Threshold, error) {
	n, pct, err := parseAmount(s)
	if err != nil {
		return Threshold{}, err
	}
	if pct {
		return Threshold{percent: n, isPct: true}, nil
	}
	return Threshold{count: n}, nil
}

// Exceeded reports whether failedHosts out of totalHosts is more than t
// tolerates: more than the count, or more than the share.
func (t Threshold) Exceeded(failedHosts, totalHosts int) bool {
	if t.isPct {
		return failedHosts*100 > t.percent*totalHosts
	}
	return failedHosts > t.count
}

// String gives the threshold back the way ParseMaxFailures reads it.
func (t Threshold) String() string {
	if t.isPct {
		return strconv.Itoa(t.percent) + "%"
	}
	return strconv.Itoa(t.count)
}
