package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/runtime"
)

// capacityEvery is how often the bench reads the backend's capacity.
const capacityEvery = 50 * time.Millisecond

// capacity is what a sampler saw of a backend's serving weights while a
// method ran: the sum of the weights of the servers that take new traffic
// (UP, not DRAIN or MAINT, weight > 0), read from `show stat`.
type capacity struct {
	Start, Min int
	MinAt      time.Duration // since the sampler started
	MinServers string        // the servers as they were at the first lowest sample
	Samples    int
	Errors     int // reads of `show stat` that failed (not counted as samples)
	FirstErr   error
}

// pct is Min as a percentage of Start.
func (c capacity) pct() float64 {
	if c.Start == 0 {
		return 0
	}
	return 100 * float64(c.Min) / float64(c.Start)
}

func (c capacity) String() string {
	if c.Samples == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d (%.0f %%)", c.Min, c.Start, c.pct())
}

// sampleCapacity reads the backend's capacity once right away (the start)
// and then every capacityEvery until the returned stop is called; stop
// returns what was seen. The bench samples by itself, through its own
// socket connection, whatever the method under test does.
func sampleCapacity(ctx context.Context, socket string) (stop func() capacity, err error) {
	c, err := runtime.New(socket, time.Second)
	if err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		out capacity
	)
	begin := time.Now()
	read := func() {
		stats, err := c.Backend(ctx, harness.DefaultBackend)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if out.Errors++; out.FirstErr == nil {
				out.FirstErr = err
			}
			return
		}
		sum := servingWeight(stats)
		if out.Samples == 0 {
			out.Start, out.Min = sum, sum
			out.MinServers = describe(stats)
		} else if sum < out.Min {
			out.Min, out.MinAt, out.MinServers = sum, time.Since(begin), describe(stats)
		}
		out.Samples++
	}
	read()
	if out.Samples == 0 {
		return nil, fmt.Errorf("capacity: first read of show stat: %w", out.FirstErr)
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(capacityEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() capacity {
		close(done)
		<-finished
		read() // the state the method left
		mu.Lock()
		defer mu.Unlock()
		return out
	}, nil
}

// servingWeight is the sum of the weights of the servers that take new
// traffic.
func servingWeight(stats []runtime.ServerStat) int {
	sum := 0
	for _, s := range stats {
		if s.Serving() {
			sum += s.Weight
		}
	}
	return sum
}

// describe is "s1 UP 7, s1b MAINT 0, ..." for a report.
func describe(stats []runtime.ServerStat) string {
	var parts []string
	for _, s := range stats {
		parts = append(parts, fmt.Sprintf("%s %s %d", s.Server, s.Status, s.Weight))
	}
	return strings.Join(parts, ", ")
}
