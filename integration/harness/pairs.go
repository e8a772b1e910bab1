package harness

import (
	"context"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haroll/haroll/runtime"
)

// PairState is how HAProxy sees the two servers of a blue/green slot.
type PairState struct {
	Slot         string // "app-<i>"
	Primary, Alt runtime.ServerStat
}

// Live returns the one server of the pair not in maintenance, or an error
// when both or neither are.
func (p PairState) Live() (runtime.ServerStat, error) {
	switch pm, am := p.Primary.InMaint(), p.Alt.InMaint(); {
	case !pm && am:
		return p.Primary, nil
	case pm && !am:
		return p.Alt, nil
	}
	return runtime.ServerStat{}, fmt.Errorf("%s: %s is %s, %s is %s: want exactly one of them live (not in MAINT)",
		p.Slot, p.Primary.Server, p.Primary.Status, p.Alt.Server, p.Alt.Status)
}

// Idle returns the other server of the pair than live.
func (p PairState) Idle(live string) runtime.ServerStat {
	if live == p.Primary.Server {
		return p.Alt
	}
	return p.Primary
}

// Pairs reads both servers of every slot of a host started with Pairs.
func (h *Host) Pairs(ctx context.Context) ([]PairState, error) {
	if !h.Opts.Pairs {
		return nil, fmt.Errorf("host %s was not started with Pairs", h.Opts.Name)
	}
	stats, err := h.Servers(ctx)
	if err != nil {
		return nil, err
	}
	by := map[string]runtime.ServerStat{}
	for _, s := range stats {
		by[s.Server] = s
	}
	var out []PairState
	for i := range h.Names {
		p := PairState{Slot: fmt.Sprintf("app-%d", i+1)}
		var ok1, ok2 bool
		p.Primary, ok1 = by[fmt.Sprintf("s%d", i+1)]
		p.Alt, ok2 = by[h.Alts[i]]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s: servers s%d and %s not both in backend %s: %+v", p.Slot, i+1, h.Alts[i], DefaultBackend, stats)
		}
		out = append(out, p)
	}
	return out, nil
}

// Capacity is what a CapacitySampler saw: the sum of the weights of the
// backend's servers that take new traffic (status UP, or UP going down
// "UP 1/2"; not DRAIN, MAINT, NOLB or DOWN; weight > 0).
type Capacity struct {
	Start   int // the first sample's
	Min     int // the lowest sample's
	Max     int
	Last    int
	MinAt   time.Time
	MinSeen string // the servers at the lowest sample: "s1 UP 7, s1b MAINT 7, ..."
	Samples int
	Errors  int // reads that failed (during a reload the socket may not answer): not samples
	LastErr error
}

func (c Capacity) String() string {
	s := fmt.Sprintf("capacity start %d, min %d, max %d, last %d in %d samples", c.Start, c.Min, c.Max, c.Last, c.Samples)
	if c.Samples > 0 && c.Min < c.Start {
		s += fmt.Sprintf(" (min at %s: %s)", c.MinAt.Format("15:04:05.000"), c.MinSeen)
	}
	if c.Errors > 0 {
		s += fmt.Sprintf("; %d reads failed, last: %v", c.Errors, c.LastErr)
	}
	return s
}

// CapacitySampler reads `show stat` from a host's HAProxy at a fixed interval
// and keeps the lowest capacity of one backend (see Capacity).
type CapacitySampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	c      Capacity
}

// StartCapacitySampler samples backend ("" is DefaultBackend) every every
// (0 is 50 ms), the first time at once, until Stop or ctx ends.
func (h *Host) StartCapacitySampler(ctx context.Context, backend string, every time.Duration) *CapacitySampler {
	return SampleHAProxy(ctx, h.HAProxy, backend, every)
}

// SampleCapacity samples backend's capacity every every, the first time at
// once; stop ends it and returns the lowest and the first sample (-1, -1 when
// no read succeeded). StartCapacitySampler says more.
func (h *Host) SampleCapacity(ctx context.Context, backend string, every time.Duration) (stop func() (min, start int)) {
	s := h.StartCapacitySampler(ctx, backend, every)
	return func() (int, int) {
		c := s.Stop()
		if c.Samples == 0 {
			return -1, -1
		}
		return c.Min, c.Start
	}
}

// SampleHAProxy is StartCapacitySampler for an HAProxy not started as a Host.
func SampleHAProxy(ctx context.Context, hp *HAProxy, backend string, every time.Duration) *CapacitySampler {
	if backend == "" {
		backend = DefaultBackend
	}
	if every <= 0 {
		every = 50 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &CapacitySampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample(hp, backend)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *CapacitySampler) sample(hp *HAProxy, backend string) {
	reply, err := hp.Exec("show stat " + backend + " 4 -1")
	var (
		sum  int
		seen string
	)
	if err == nil {
		sum, seen, err = capacityOf(reply, backend)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.c.Errors++
		s.c.LastErr = err
		return
	}
	if s.c.Samples == 0 {
		s.c.Start, s.c.Min, s.c.Max, s.c.MinAt, s.c.MinSeen = sum, sum, sum, now, seen
	}
	if sum < s.c.Min {
		s.c.Min, s.c.MinAt, s.c.MinSeen = sum, now, seen
	}
	s.c.Max = max(s.c.Max, sum)
	s.c.Last = sum
	s.c.Samples++
}

// Now returns what was sampled so far.
func (s *CapacitySampler) Now() Capacity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

// Stop ends the sampling and returns what it saw.
func (s *CapacitySampler) Stop() Capacity {
	s.cancel()
	<-s.done
	return s.Now()
}

// capacityOf sums, over the server lines of backend in a `show stat` CSV
// reply, the weights of those taking new traffic; seen lists every server as
// "name status weight".
func capacityOf(reply, backend string) (sum int, seen string, err error) {
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(reply, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return 0, "", fmt.Errorf("show stat: %w", err)
	}
	if len(rows) == 0 {
		return 0, "", fmt.Errorf("show stat: empty reply %q", reply)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, name := range []string{"pxname", "svname", "status", "weight"} {
		if _, ok := col[name]; !ok {
			return 0, "", fmt.Errorf("show stat: no %s column in %q", name, rows[0])
		}
	}
	var list []string
	servers := 0
	for _, row := range rows[1:] {
		if len(row) <= max(col["pxname"], col["svname"], col["status"], col["weight"]) || row[col["pxname"]] != backend {
			continue
		}
		name := row[col["svname"]]
		if name == "FRONTEND" || name == "BACKEND" {
			continue
		}
		servers++
		status := row[col["status"]]
		w, err := strconv.Atoi(row[col["weight"]])
		if err != nil {
			return 0, "", fmt.Errorf("show stat: server %s weight %q", name, row[col["weight"]])
		}
		list = append(list, fmt.Sprintf("%s %s %d", name, status, w))
		if w > 0 && (status == "UP" || strings.HasPrefix(status, "UP ")) {
			sum += w
		}
	}
	if servers == 0 {
		return 0, "", fmt.Errorf("show stat: no server of backend %s in %q", backend, reply)
	}
	return sum, strings.Join(list, ", "), nil
}
