package rollout

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// randomSize is a count in 1..2n or a percentage in 1..100.
func randomSize(r *rand.Rand, n int) Size {
	if r.IntN(2) == 0 {
		return Size{count: 1 + r.IntN(2*n)}
	}
	return Size{percent: 1 + r.IntN(100)}
}

func TestEveryPlanCoversEachHostOnceInBoundedSlotMajorBatches(t *testing.T) {
	r := rand.New(rand.NewPCG(20240611, 1))
	for i := 0; i < 5000; i++ {
		nHosts := 1 + r.IntN(300)
		nSlots := 1 + r.IntN(5)
		hosts, slots := hostNames(nHosts), make([]string, nSlots)
		for j := range slots {
			slots[j] = fmt.Sprintf("s%d", j)
		}
		s := Strategy{Batch: randomSize(r, nHosts)}
		if r.IntN(3) == 0 {
			s.Canary = randomSize(r, nHosts)
		}
		p, err := NewPlan(hosts, slots, s)
		if err != nil {
			t.Fatalf("hosts %d, %+v: %v", nHosts, s, err)
		}
		checkPlan(t, p, hosts, slots, s)
	}
}

func checkPlan(t *testing.T, p Plan, hosts, slots []string, s Strategy) {
	t.Helper()
	where := fmt.Sprintf("%d hosts, batch %s, canary %q", len(hosts), s.Batch, s.Canary)
	var order []string
	seen := map[string]int{}
	for i, b := range p.Batches {
		if b.Canary != (i == 0 && !s.Canary.IsZero()) {
			t.Fatalf("%s: batch %d canary = %v", where, i, b.Canary)
		}
		limit := s.Batch.Of(len(hosts))
		if b.Canary {
			limit = s.Canary.Of(len(hosts))
		}
		if len(b.Hosts) == 0 || len(b.Hosts) > limit {
			t.Fatalf("%s: batch %d has %d hosts, limit %d", where, i, len(b.Hosts), limit)
		}
		if !b.Canary && i < len(p.Batches)-1 && len(b.Hosts) != limit {
			t.Fatalf("%s: batch %d is short (%d of %d) but not last", where, i, len(b.Hosts), limit)
		}
		for _, h := range b.Hosts {
			seen[h]++
			order = append(order, h)
		}
		if len(b.Steps) != len(slots) {
			t.Fatalf("%s: batch %d has %d steps for %d slots", where, i, len(b.Steps), len(slots))
		}
		for k, st := range b.Steps {
			if st.Slot != slots[k] {
				t.Fatalf("%s: batch %d step %d is slot %s, want %s", where, i, k, st.Slot, slots[k])
			}
			inStep := map[string]bool{}
			for _, h := range st.Hosts {
				if inStep[h] {
					t.Fatalf("%s: host %s twice in batch %d step %d", where, h, i, k)
				}
				inStep[h] = true
			}
			if len(inStep) != len(b.Hosts) {
				t.Fatalf("%s: batch %d step %d covers %d of %d hosts", where, i, k, len(inStep), len(b.Hosts))
			}
		}
	}
	for i, h := range hosts {
		if seen[h] != 1 {
			t.Fatalf("%s: host %s is in %d batches", where, h, seen[h])
		}
		if order[i] != h {
			t.Fatalf("%s: host %d is %s, want inventory order (%s)", where, i, order[i], h)
		}
	}
	if len(order) != len(hosts) {
		t.Fatalf("%s: plan covers %d hosts, want %d", where, len(order), len(hosts))
	}
}
