package main

import (
	"fmt"
	"slices"
	"time"
)

// stepTimes is one step (a slot on every host of a batch) as its agents saw
// it.
type stepTimes struct {
	batch, step int // 1-based
	slot        string
	hosts       int
	// batchStart, on the first step of a batch, is when the coordinator
	// started the batch (its result says); zero on the other steps.
	// firstOpen and lastOpen are the first and the last Redeploy stream
	// opened on an agent; lastReport is the last report sent.
	batchStart, firstOpen, lastOpen, lastReport time.Time
	// slowest is the longest slot time an agent of the step reported.
	slowest time.Duration
}

// skew is the dispatch skew: from the step's first stream open to its
// last. (The coordinator says when a step starts only in its progress,
// which is written asynchronously, in batches: the first stream open is the
// first thing an agent sees of a step. The time before it is in the tail.)
func (s stepTimes) skew() time.Duration { return s.lastOpen.Sub(s.firstOpen) }

// dispatchDelay is, on the first step of a batch, from the batch's start to
// its first stream open (the batch's dials, unless made ahead); ok is false
// on the other steps.
func (s stepTimes) dispatchDelay() (d time.Duration, ok bool) {
	if s.batchStart.IsZero() {
		return 0, false
	}
	return s.firstOpen.Sub(s.batchStart), true
}

// excess is the step's time beyond its slowest slot: late opens and late
// report handling.
func (s stepTimes) excess() time.Duration { return s.lastReport.Sub(s.firstOpen) - s.slowest }

// steps puts every call under its step of the plan, in plan order, with
// the batch's start on its first step. Every (host, slot) of the plan must
// have exactly one call.
func steps(res result, addrs []string, cs []call) ([]stepTimes, error) {
	type key struct {
		host string
		slot string
	}
	byPair := make(map[key]call, len(cs))
	for _, c := range cs {
		if c.Index < 0 || c.Index >= len(addrs) {
			return nil, fmt.Errorf("a call from agent %d, which is not in the fleet of %d", c.Index, len(addrs))
		}
		k := key{addrs[c.Index], c.Slot}
		if _, dup := byPair[k]; dup {
			return nil, fmt.Errorf("agent %s was asked for slot %s twice", k.host, k.slot)
		}
		byPair[k] = c
	}
	var out []stepTimes
	for bi, b := range res.Plan.Batches {
		for si, st := range b.Steps {
			t := stepTimes{batch: bi + 1, step: si + 1, slot: st.Slot, hosts: len(st.Hosts)}
			if si == 0 && bi < len(res.Batches) {
				t.batchStart = res.Batches[bi].Start
			}
			for _, h := range st.Hosts {
				c, ok := byPair[key{h, st.Slot}]
				if !ok {
					return nil, fmt.Errorf("batch %d step %d: agent %s was never asked for slot %s", bi+1, si+1, h, st.Slot)
				}
				delete(byPair, key{h, st.Slot})
				if t.firstOpen.IsZero() || c.Arrived.Before(t.firstOpen) {
					t.firstOpen = c.Arrived
				}
				if c.Arrived.After(t.lastOpen) {
					t.lastOpen = c.Arrived
				}
				if c.Report.After(t.lastReport) {
					t.lastReport = c.Report
				}
				t.slowest = max(t.slowest, c.SlotDur)
			}
			if t.hosts > 0 {
				out = append(out, t)
			}
		}
	}
	if len(byPair) > 0 {
		return nil, fmt.Errorf("%d call(s) outside the plan", len(byPair))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the plan has no step")
	}
	return out, nil
}

// figures are one build's measurements.
type figures struct {
	label  string
	agents int
	steps  []stepTimes
	// total is coordinator start to exit; ideal the sum over steps of the
	// slowest slot time.
	total, ideal time.Duration
	// preflight is coordinator start to the first stream open; teardown
	// the last report to the coordinator's exit.
	preflight, teardown time.Duration
	// tails are, for each step but the last, its last report to the next
	// step's first stream open.
	tails []time.Duration
	// cpu is the coordinator's user+system time; maxRSS its peak resident
	// set in bytes; agentsCPU the agent children's CPU.
	cpu, agentsCPU time.Duration
	maxRSS         int64
	stateWrites    *stateWrites
	stateBytes     int64
	scrapes        scrapes
}

// measure computes a build's figures from its coordinator run and its
// agents' calls.
func measure(label string, run coordinatorRun, addrs []string, cs []call, agentsCPU time.Duration) (figures, error) {
	st, err := steps(run.result, addrs, cs)
	if err != nil {
		return figures{}, fmt.Errorf("%s: %w", label, err)
	}
	f := figures{
		label: label, agents: len(addrs), steps: st,
		total:     run.exit.Sub(run.start),
		preflight: st[0].firstOpen.Sub(run.start),
		teardown:  run.exit.Sub(st[len(st)-1].lastReport),
		cpu:       run.cpu, agentsCPU: agentsCPU, maxRSS: run.maxRSS,
		stateWrites: run.result.StateWrites, stateBytes: run.stateBytes, scrapes: run.scrapes,
	}
	for i, s := range st {
		f.ideal += s.slowest
		if i+1 < len(st) {
			f.tails = append(f.tails, st[i+1].firstOpen.Sub(s.lastReport))
		}
	}
	return f, nil
}

// overheadPct is how much longer than ideal the rollout took, in percent.
func (f figures) overheadPct() float64 {
	return 100 * (f.total.Seconds()/f.ideal.Seconds() - 1)
}

// cpuPerHost is the coordinator's CPU time per host, in milliseconds.
func (f figures) cpuPerHost() float64 {
	return float64(f.cpu.Microseconds()) / 1000 / float64(f.agents)
}

func (f figures) skews() []time.Duration {
	out := make([]time.Duration, len(f.steps))
	for i, s := range f.steps {
		out[i] = s.skew()
	}
	return out
}

// dispatchDelays are the batches' starts to their first stream opens, for
// the batches whose start the coordinator reported.
func (f figures) dispatchDelays() []time.Duration {
	var out []time.Duration
	for _, s := range f.steps {
		if d, ok := s.dispatchDelay(); ok {
			out = append(out, d)
		}
	}
	return out
}

func (f figures) excesses() []time.Duration {
	out := make([]time.Duration, len(f.steps))
	for i, s := range f.steps {
		out[i] = s.excess()
	}
	return out
}

// stats are the max, the median (the lower middle for an even count) and
// the sum of ds; all zero for none.
func stats(ds []time.Duration) (maxD, median, sum time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	for _, d := range s {
		sum += d
	}
	return s[len(s)-1], s[(len(s)-1)/2], sum
}
