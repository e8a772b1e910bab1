package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/integration/harness"
)

// capacityEvery is how often the bench reads the backend's capacity.
const capacityEvery = 50 * time.Millisecond

func ms(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

// capacityPct is the lowest capacity as a percentage of the start.
func capacityPct(c harness.Capacity) float64 {
	if c.Start == 0 {
		return 0
	}
	return 100 * float64(c.Min) / float64(c.Start)
}

// capacityText is "min/start (pct %)".
func capacityText(c harness.Capacity) string {
	if c.Samples == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d (%s %%)", c.Min, c.Start, pctFloor(capacityPct(c)))
}

// header says what every method ran under.
func header(o options, what string) {
	fmt.Printf("\n%s behind %s under %d POST/s plus a 3 s request every 500 ms\n", what, o.haproxy, o.rate)
	fmt.Printf("(app: boot 1 s, health 503 for 0.5 s more, 0-30 ms latency; HAProxy inter %s rise %d; weights %v; %d cores;\n",
		o.inter, o.rise, o.weights, runtime.NumCPU())
	fmt.Printf(" capacity: lowest sum of the weights of servers UP, not DRAIN/MAINT, weight > 0, from show stat every %s, / its start)\n\n",
		capacityEvery)
}

// printComparison is the table of every method that ran.
func printComparison(outcomes []outcome, o options) {
	header(o, "Replacing 3 containers (v1 -> v2)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\twall time (3 slots)\tfailed / total\tfailed 3 s requests\tcapacity min/start\tweights after\terror")
	for _, oc := range outcomes {
		fmt.Fprintf(tw, "%s\t%s\t%d / %d\t%d / %d\t%s\t%s\t%s\n", oc.method.name, ms(oc.wall),
			oc.failed(), oc.load.Sent+oc.load.SlowSent, oc.load.SlowFailed, oc.load.SlowSent, capacityText(oc.capacity), oc.weights, errText(oc))
	}
	tw.Flush()
	printNotes(outcomes, func(oc outcome) string { return oc.method.name })
}

// printFixed is the comparison on fixed host ports: the methods with a
// fixed row, their wall time against the 2016 method's.
func printFixed(outcomes []outcome, o options) {
	var base time.Duration
	for _, oc := range outcomes {
		if oc.method.name == name2016 {
			base = oc.wall
		}
	}
	header(o, "Fixed published host ports: replacing 3 containers (v1 -> v2)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\twall time (3 slots)\tvs 2016\tfailed / total\tfailed 3 s requests\tcapacity min/start\tweights after\terror")
	for _, oc := range outcomes {
		if oc.method.fixed == "" {
			continue
		}
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.2fx", oc.wall.Seconds()/base.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d / %d\t%d / %d\t%s\t%s\t%s\n", oc.method.fixed, ms(oc.wall), ratio,
			oc.failed(), oc.load.Sent+oc.load.SlowSent, oc.load.SlowFailed, oc.load.SlowSent, capacityText(oc.capacity), oc.weights, errText(oc))
	}
	tw.Flush()
	printNotes(outcomes, func(oc outcome) string { return oc.method.fixed })
}

// printNotes says, under a table, what failed and where capacity was at
// its lowest, for the methods that lost requests or capacity; label is a
// method's name in the table ("": not in it).
func printNotes(outcomes []outcome, label func(outcome) string) {
	for _, oc := range outcomes {
		name := label(oc)
		if name == "" {
			continue
		}
		if len(oc.load.Errors) > 0 {
			fmt.Printf("  %s: %s\n", name, strings.Join(oc.load.Errors, ", "))
		}
		if c := oc.capacity; c.Min < c.Start {
			fmt.Printf("  %s: lowest capacity %d at +%s (%s)\n", name, c.Min, ms(c.MinAt.Sub(oc.begin)), c.MinSeen)
		}
		if c := oc.capacity; c.Errors > 0 {
			fmt.Printf("  %s: %d of %d capacity reads failed (last: %v)\n", name, c.Errors, c.Errors+c.Samples, c.LastErr)
		}
	}
}

func errText(oc outcome) string {
	if oc.err == nil {
		return "-"
	}
	s, _, _ := strings.Cut(oc.err.Error(), "\n")
	return s
}

// printSlots prints haroll's time per slot beside the slot's physical
// limit: its drain + the app's boot-to-ready + one rise of HAProxy checks.
// A blue/green slot's limit is boot-to-ready + one rise: its old side
// drains once the new side serves, beside the next slot's surge.
func printSlots(outcomes []outcome, o options) {
	rise := time.Duration(o.rise) * o.inter
	fmt.Printf("\nharoll per slot against the limit = drain + boot-to-ready (%s) + rise x inter (%s); blue/green: boot-to-ready + rise x inter\n\n", ms(o.bootTime), ms(rise))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\tslot\tdrain\tcreate*\tstop\tstart\tboot\taddress\tgate\trestore+cleanup\ttotal\tlimit\ttotal - limit")
	for _, oc := range outcomes {
		if oc.report == nil {
			continue
		}
		for _, s := range oc.report.Slots {
			p := s.Phases
			limit := p[agent.PhaseDrain] + o.bootTime + rise
			total := s.Total
			if oc.method.pairs {
				// The surge: the old side's drain and cleanup come after
				// it, beside the next slot's surge.
				limit, total = o.bootTime+rise, s.Total-p[agent.PhaseDrain]-p[agent.PhaseCleanup]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%+d ms\n", oc.method.name, s.Slot,
				ms(p[agent.PhaseDrain]), ms(p[agent.PhaseCreate]), ms(p[agent.PhaseStop]), ms(p[agent.PhaseStart]), ms(p[agent.PhaseBoot]),
				ms(p[agent.PhaseAddress]), ms(p[agent.PhaseGate]), ms(p[agent.PhaseRestore]+p[agent.PhaseCleanup]),
				ms(total), ms(limit), (total - limit).Milliseconds())
		}
	}
	tw.Flush()
	fmt.Println("\n* create runs while the old container drains, and so do start and boot when started first:")
	fmt.Println("  the phases overlap, and total is the slot's wall time.")
	fmt.Println("  Blue/green: total is the surge (report total - drain - cleanup): the new side created, started,")
	fmt.Println("  booted, gated and given the weight; the old side's drain and cleanup follow, beside the next surge.")
}

// printTimelines shows when each phase of a blue/green run ended, from
// haroll's progress: where the time went, and which slots overlapped.
func printTimelines(outcomes []outcome) {
	for _, oc := range outcomes {
		if !oc.method.pairs || oc.timeline == nil {
			continue
		}
		fmt.Printf("\n%s: haroll's progress, each line at the time it came (phase ended) since the deploy began\n", oc.method.name)
		fmt.Print(oc.timeline)
	}
}

// summary is the blue/green line: the wall time of blue/green with
// max_surge 1 against the 2016 method's, the requests the blue/green runs
// of the fixed-port table failed, and the lowest capacity they left the
// backend with. ok is false when the run did not have both methods.
func summary(outcomes []outcome) (line string, ok bool) {
	var base, bg time.Duration
	var failed int64
	minPct, ran := math.Inf(1), false
	for _, oc := range outcomes {
		switch {
		case oc.method.name == name2016:
			base = oc.wall
		case oc.method.pairs && oc.method.fixed != "":
			ran = true
			failed += oc.failed()
			minPct = math.Min(minPct, capacityPct(oc.capacity))
			if oc.method.maxSurge == 1 {
				bg = oc.wall
			}
		}
	}
	if base == 0 || bg == 0 || !ran {
		return "", false
	}
	return fmt.Sprintf("bluegreen ratio_vs_2016=%.2f failed=%d capacity_min_pct=%s",
		bg.Seconds()/base.Seconds(), failed, pctFloor(minPct)), true
}

// pctFloor prints a percentage without rounding it up to a target:
// 99.9 is 99.9, not 100.
func pctFloor(p float64) string {
	if p == math.Trunc(p) {
		return fmt.Sprintf("%.0f", p)
	}
	return fmt.Sprintf("%.1f", math.Floor(p*10)/10)
}
