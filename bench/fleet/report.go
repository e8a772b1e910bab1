package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// writeTable writes every build's figures side by side, as a markdown
// table, each row saying what it measures.
func writeTable(w io.Writer, fs []figures) {
	head := []string{"figure"}
	for _, f := range fs {
		head = append(head, f.label)
	}
	row := func(name string, cell func(f figures) string) {
		cells := []string{name}
		for _, f := range fs {
			cells = append(cells, cell(f))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(w, "|---%s|\n", strings.Repeat("|---:", len(fs)))
	row("agents (hosts × 3 slots)", func(f figures) string { return fmt.Sprint(f.agents) })
	row("steps (batches × slots)", func(f figures) string { return fmt.Sprint(len(f.steps)) })
	row("total: coordinator start to exit", func(f figures) string { return secs(f.total) })
	row("ideal: Σ steps' slowest slot time", func(f figures) string { return secs(f.ideal) })
	row("overhead: total / ideal − 1", func(f figures) string { return fmt.Sprintf("%.1f%%", f.overheadPct()) })
	row("preflight: start to first stream open", func(f figures) string { return secs(f.preflight) })
	row("dispatch skew per step (first to last stream open): max / median", func(f figures) string {
		mx, med, _ := stats(f.skews())
		return millis(mx) + " / " + millis(med)
	})
	row("batch start (coordinator's result) to first stream open: max / median", func(f figures) string {
		d := f.dispatchDelays()
		if len(d) == 0 {
			return "n/a"
		}
		mx, med, _ := stats(d)
		return millis(mx) + " / " + millis(med)
	})
	row("tail per step (slowest report to next step's first open): max / median", func(f figures) string {
		mx, med, _ := stats(f.tails)
		return millis(mx) + " / " + millis(med)
	})
	row("Σ tails", func(f figures) string { _, _, sum := stats(f.tails); return secs(sum) })
	row("Σ in-step excess (step time beyond its slowest slot)", func(f figures) string {
		_, _, sum := stats(f.excesses())
		return secs(sum)
	})
	row("teardown: last report to exit", func(f figures) string { return secs(f.teardown) })
	row("state writes (fsync'd): count, total, max (coordinator's own)", func(f figures) string {
		if f.stateWrites == nil {
			return "n/a"
		}
		sw := f.stateWrites
		s := fmt.Sprintf("%d, %s, %s", sw.Count, secs(time.Duration(sw.TotalNS)), millis(time.Duration(sw.MaxNS)))
		if sw.Records > 0 || sw.Snapshots > 0 {
			s += fmt.Sprintf(" (%d records, %d snapshots)", sw.Records, sw.Snapshots)
		}
		return s
	})
	row("state file at the end", func(f figures) string { return fmt.Sprintf("%.2f MB", float64(f.stateBytes)/(1<<20)) })
	row("coordinator CPU (user+sys)", func(f figures) string { return secs(f.cpu) })
	row("coordinator CPU per host", func(f figures) string { return fmt.Sprintf("%.2f ms", f.cpuPerHost()) })
	row("coordinator peak RSS", func(f figures) string { return fmt.Sprintf("%.1f MB", rssMB(f)) })
	row("agent processes' CPU (same machine)", func(f figures) string { return secs(f.agentsCPU) })
	row("/metrics scrapes: ok / failed, slowest, size", func(f figures) string {
		s := f.scrapes
		return fmt.Sprintf("%d / %d, %s, %.0f KB", s.ok, s.failed, millis(s.max), float64(s.bytes)/1024)
	})
}

// writeLine writes the one-line summary of a build; the fields before
// build= are the ones the issue fixes, in its order.
func writeLine(w io.Writer, f figures) {
	fmt.Fprintf(w, "fleet agents=%d total_s=%.2f ideal_s=%.2f overhead_pct=%.1f coordinator_rss_mb=%.1f cpu_ms_per_host=%.2f build=%s\n",
		f.agents, f.total.Seconds(), f.ideal.Seconds(), f.overheadPct(), rssMB(f), f.cpuPerHost(), f.label)
}

func rssMB(f figures) float64 { return float64(f.maxRSS) / (1 << 20) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func millis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}
