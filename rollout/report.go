package rollout

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Progress writes the live progress of a rollout, one plain line per
// event, fit for a terminal, a pipe or a log file.
type Progress struct {
	w     io.Writer
	hostW int
	slotW int
}

// NewProgress writes to w, aligning on the longest host and slot names.
func NewProgress(w io.Writer, hosts, slots []string) *Progress {
	p := &Progress{w: w, hostW: 4, slotW: 4}
	for _, h := range hosts {
		p.hostW = max(p.hostW, len(h))
	}
	for _, s := range slots {
		p.slotW = max(p.slotW, len(s))
	}
	return p
}

// Event writes e as one line. It is meant as Executor.Events.
func (p *Progress) Event(e Event) {
	where := fmt.Sprintf("batch %d/%d", e.Batch, e.Batches)
	if e.Step > 0 {
		where += fmt.Sprintf(" step %d/%d %-*s", e.Step, e.Steps, p.slotW, e.Slot)
	}
	var line string
	switch e.Kind {
	case EventSkipped:
		line = fmt.Sprintf("skipped %-*s  %s", p.hostW, e.Host, e.Err)
	case EventWaiting:
		line = fmt.Sprintf("waiting %-*s  busy: %s (waiting until it is idle, then asking its slot again)", p.hostW, e.Host, e.Detail)
	case EventBatchStart:
		canary := ""
		if e.Canary {
			canary = " (canary)"
		}
		line = fmt.Sprintf("%s%s  start: %d host(s), %d slot(s) each", where, canary, e.Hosts, e.Steps)
	case EventStepStart:
		line = fmt.Sprintf("%s  start on %d host(s)", where, e.Hosts)
	case EventPhase:
		line = fmt.Sprintf("%s  %-*s  %-11s %8s", where, p.hostW, e.Host, e.Phase, round(e.Duration))
		if e.Detail != "" {
			line += "  " + e.Detail
		}
		if e.Err != "" {
			line += "  FAILED: " + e.Err
		}
	case EventSlotDone:
		line = fmt.Sprintf("%s  %-*s  %-11s %8s", where, p.hostW, e.Host, e.Result, round(e.Duration))
		if e.Err != "" {
			line += "  FAILED: " + e.Err
		}
	case EventCanaryAnalysis, EventCanaryPassed, EventCanaryFailed, EventCanaryPaused, EventCanaryPromoted:
		line = fmt.Sprintf("%s (canary)  %s: %s", where, strings.TrimPrefix(string(e.Kind), "canary_"), e.Detail)
	case EventCanaryRollback:
		line = fmt.Sprintf("%s (canary)  %-*s  %-*s  rollback: %s %s", where, p.hostW, e.Host, p.slotW, e.Slot, e.Result, e.Detail)
		if e.Err != "" {
			line += "  FAILED: " + e.Err
		}
	case EventHook:
		line = fmt.Sprintf("hook %-4s %8s", e.Phase, round(e.Duration))
		if e.Detail != "" {
			line += "  " + e.Detail
		}
		if e.Err != "" {
			line += "  FAILED: " + e.Err
		}
	case EventPrepull:
		line = fmt.Sprintf("prepull %d/%d %-*s  %s", e.Hosts, e.Steps, p.hostW, e.Host, e.Detail)
		if e.Err != "" {
			line += "FAILED: " + e.Err
		}
	case EventPaused:
		line = "on_failure pause: " + e.Detail
	case EventRollback:
		line = fmt.Sprintf("on_failure rollback  %-*s  %-*s  %s %s", p.hostW, e.Host, p.slotW, e.Slot, e.Result, e.Detail)
		if e.Err != "" {
			line += "  FAILED: " + e.Err
		}
	case EventStepEnd, EventBatchEnd:
		line = fmt.Sprintf("%s  end: %d host(s), %d failed, in %s", where, e.Hosts, e.Failed, round(e.Duration))
	default:
		return
	}
	fmt.Fprintln(p.w, line)
}

// WritePlan writes p for a person: batches, their hosts, the slot order.
func WritePlan(w io.Writer, p Plan, s Strategy) {
	canary := "none"
	if !s.Canary.IsZero() {
		canary = s.Canary.String()
	}
	var slots []string
	if len(p.Batches) > 0 {
		for _, st := range p.Batches[0].Steps {
			slots = append(slots, st.Slot)
		}
	}
	fmt.Fprintf(w, "plan: %d host(s) in %d batch(es) (batch %s, canary %s)\n", p.Hosts(), len(p.Batches), s.Batch, canary)
	fmt.Fprintf(w, "slot order in every batch: %s (each slot on all the batch's hosts at once, one slot per host at a time)\n", strings.Join(slots, " -> "))
	for i, b := range p.Batches {
		kind := ""
		if b.Canary {
			kind = " (canary)"
		}
		fmt.Fprintf(w, "batch %d/%d%s: %d host(s): %s\n", i+1, len(p.Batches), kind, len(b.Hosts), strings.Join(b.Hosts, " "))
	}
}

// WriteTable writes the final host × slot table and a summary line.
func WriteTable(w io.Writer, res Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "HOST\tBATCH\tRESULT\t")
	for _, s := range res.Slots {
		fmt.Fprintf(tw, "%s\t", strings.ToUpper(s))
	}
	fmt.Fprintln(tw, "TOTAL\t")
	for _, h := range res.Hosts {
		batch := "-"
		if h.Batch > 0 {
			batch = fmt.Sprint(h.Batch)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t", h.Host, batch, h.Result)
		var total time.Duration
		for i := range res.Slots {
			if i >= len(h.Slots) {
				fmt.Fprint(tw, "-\t")
				continue
			}
			s := h.Slots[i]
			total += s.Duration
			if s.Result == ResultNotRun {
				fmt.Fprint(tw, "not_run\t")
				continue
			}
			fmt.Fprintf(tw, "%s %s\t", s.Result, round(s.Duration))
		}
		fmt.Fprintf(tw, "%s\t\n", round(total))
	}
	tw.Flush()
	for _, h := range res.Hosts {
		if h.Error != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", h.Host, h.Result, h.Error)
		}
	}
	t := res.Totals
	fmt.Fprintf(w, "image %s: %d host(s): %d done, %d failed, %d not run, %d skipped, in %s\n",
		res.Image, t.Hosts, t.Done, t.Failed, t.NotRun, t.Skipped, round(res.Total))
	if res.Resumed > 0 {
		fmt.Fprintf(w, "resumed: %d (host, slot) pair(s) were finished before the resume and not asked again\n", res.Resumed)
	}
	if res.Stopped != "" {
		fmt.Fprintf(w, "stopped: %s\n", res.Stopped)
	}
	if res.Stopped != "" || res.RolledBack > 0 {
		writeWhere(w, res)
	}
}

// writeWhere says which image every host's slots run at the end, hosts
// grouped by the same images: after a stop, the fleet may be mixed.
func writeWhere(w io.Writer, res Result) {
	type group struct {
		images string
		hosts  []string
	}
	var groups []*group
	byImages := map[string]*group{}
	for _, h := range res.Hosts {
		if h.Result == HostSkipped {
			continue
		}
		var parts []string
		for _, s := range h.Slots {
			img := s.Image
			if img == "" {
				img = "? (see `haroll status` on the host)"
			}
			parts = append(parts, s.Slot+"="+img)
		}
		key := strings.Join(parts, " ")
		g := byImages[key]
		if g == nil {
			g = &group{images: key}
			byImages[key] = g
			groups = append(groups, g)
		}
		g.hosts = append(g.hosts, h.Host)
	}
	fmt.Fprintln(w, "where the hosts are now:")
	for _, g := range groups {
		fmt.Fprintf(w, "  %d host(s) on %s: %s\n", len(g.hosts), g.images, strings.Join(g.hosts, " "))
	}
}

// WriteJSON writes res as indented JSON.
func WriteJSON(w io.Writer, res Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// round keeps about three significant digits.
func round(d time.Duration) time.Duration {
	switch {
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d < time.Minute:
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
