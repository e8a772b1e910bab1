package main

import (
	"strings"
	"testing"
	"time"
)

// twoBatchPlan is a plan of two batches (hosts a, b then c), one slot.
func twoBatchPlan() result {
	var r result
	r.Batches = make([]batchTiming, 2)
	r.Plan.Batches = []planBatch{
		{Hosts: []string{"a", "b"}, Steps: []planStep{{Slot: "app-1", Hosts: []string{"a", "b"}}}},
		{Hosts: []string{"c"}, Steps: []planStep{{Slot: "app-1", Hosts: []string{"c"}}}},
	}
	return r
}

func TestTheFiguresSplitTheTotalIntoPreflightStepsTailsAndTeardown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	addrs := []string{"a", "b", "c"}
	cs := []call{
		// batch 1: opened at 100 and 130 ms, slots of 2 s and 3 s.
		{Index: 0, Slot: "app-1", Arrived: at(100), Report: at(2110), SlotDur: 2 * time.Second},
		{Index: 1, Slot: "app-1", Arrived: at(130), Report: at(3140), SlotDur: 3 * time.Second},
		// batch 2: opened 60 ms after batch 1's last report.
		{Index: 2, Slot: "app-1", Arrived: at(3200), Report: at(7200), SlotDur: 4 * time.Second},
	}
	run := coordinatorRun{start: t0, exit: at(7250), cpu: 300 * time.Millisecond, maxRSS: 50 << 20, result: twoBatchPlan()}
	run.result.Batches[0].Start = at(90) // batch 2's start is not reported
	f, err := measure("tree", run, addrs, cs, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]time.Duration{
		"total":     {f.total, 7250 * time.Millisecond},
		"ideal":     {f.ideal, 7 * time.Second},
		"preflight": {f.preflight, 100 * time.Millisecond},
		"teardown":  {f.teardown, 50 * time.Millisecond},
		"skew 1":    {f.steps[0].skew(), 30 * time.Millisecond},
		"excess 1":  {f.steps[0].excess(), 40 * time.Millisecond},
	}
	for name, w := range want {
		if w[0] != w[1] {
			t.Errorf("%s = %s, want %s", name, w[0], w[1])
		}
	}
	if d := f.dispatchDelays(); len(d) != 1 || d[0] != 10*time.Millisecond {
		t.Errorf("dispatch delays = %v, want [10ms] (batch 1 started at 90 ms, first open at 100 ms; batch 2's start unknown)", d)
	}
	if len(f.tails) != 1 || f.tails[0] != 60*time.Millisecond {
		t.Errorf("tails = %v, want [60ms]", f.tails)
	}
	// Every part of the total is accounted for, once.
	_, _, tails := stats(f.tails)
	_, _, excess := stats(f.excesses())
	if sum := f.preflight + f.ideal + excess + tails + f.teardown; sum != f.total {
		t.Errorf("preflight+ideal+excess+tails+teardown = %s, want the total %s", sum, f.total)
	}
	if got := f.overheadPct(); got < 3.57 || got > 3.58 {
		t.Errorf("overhead = %.3f%%, want 7.25/7 - 1 = 3.57%%", got)
	}
	if got := f.cpuPerHost(); got != 100 {
		t.Errorf("cpu per host = %.2f ms, want 100", got)
	}
}

func TestACallMissingOrAskedTwiceIsAnErrorNotAFigure(t *testing.T) {
	addrs := []string{"a", "b", "c"}
	now := time.Now()
	full := []call{
		{Index: 0, Slot: "app-1", Arrived: now, Report: now},
		{Index: 1, Slot: "app-1", Arrived: now, Report: now},
		{Index: 2, Slot: "app-1", Arrived: now, Report: now},
	}
	cases := map[string]struct {
		calls []call
		want  string
	}{
		"missing":   {full[:2], "never asked"},
		"twice":     {append(full, full[0]), "twice"},
		"unplanned": {append(full, call{Index: 0, Slot: "app-2", Arrived: now, Report: now}), "outside the plan"},
		"stranger":  {append(full, call{Index: 7, Slot: "app-1"}), "not in the fleet"},
	}
	for name, c := range cases {
		_, err := steps(twoBatchPlan(), addrs, c.calls)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, c.want)
		}
	}
}

func TestStatsGiveTheMaxTheLowerMedianAndTheSum(t *testing.T) {
	mx, med, sum := stats([]time.Duration{4, 1, 3, 2})
	if mx != 4 || med != 2 || sum != 10 {
		t.Errorf("stats = %d, %d, %d; want 4, 2, 10", mx, med, sum)
	}
	if mx, med, sum := stats(nil); mx != 0 || med != 0 || sum != 0 {
		t.Errorf("stats(nil) = %d, %d, %d; want zeros", mx, med, sum)
	}
}

func TestTheSummaryLineStartsWithTheFieldsTheIssueFixes(t *testing.T) {
	f := figures{label: "baseline@abc123", agents: 10, total: 11 * time.Second, ideal: 10 * time.Second,
		cpu: 25 * time.Millisecond, maxRSS: 3 << 20}
	var b strings.Builder
	writeLine(&b, f)
	want := "fleet agents=10 total_s=11.00 ideal_s=10.00 overhead_pct=10.0 coordinator_rss_mb=3.0 cpu_ms_per_host=2.50 build=baseline@abc123\n"
	if b.String() != want {
		t.Errorf("line:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTheTableSaysNAForAStateWriteCountTheBuildDoesNotReport(t *testing.T) {
	st := stepTimes{hosts: 1, slowest: time.Second}
	fs := []figures{
		{label: "baseline@abc", agents: 1, steps: []stepTimes{st}, total: time.Second, ideal: time.Second},
		{label: "tree", agents: 1, steps: []stepTimes{st}, total: time.Second, ideal: time.Second,
			stateWrites: &stateWrites{Count: 3, TotalNS: int64(30 * time.Millisecond), MaxNS: int64(12 * time.Millisecond), Records: 40, Snapshots: 1}},
	}
	var b strings.Builder
	writeTable(&b, fs)
	var row string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "| state writes") {
			row = l
		}
	}
	if !strings.Contains(row, "| n/a | 3, 0.03 s, 12.0 ms (40 records, 1 snapshots) |") {
		t.Errorf("state writes row %q: want n/a for the baseline and the tree's count, total, max, records and snapshots", row)
	}
}
