package live

import (
	"strconv"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
)

// styles colour the view; Bubble Tea takes the colours down to what the
// terminal has (none on a file or a pipe). noStyles draws plain text.
type styles struct {
	title, label, bad, dim lipgloss.Style
}

func newStyles() styles {
	return styles{
		title: lipgloss.NewStyle().Bold(true),
		label: lipgloss.NewStyle().Bold(true),
		bad:   lipgloss.NewStyle().Foreground(lipgloss.Red),
		dim:   lipgloss.NewStyle().Faint(true),
	}
}

func noStyles() styles {
	plain := lipgloss.NewStyle()
	return styles{title: plain, label: plain, bad: plain, dim: plain}
}

// labelWidth aligns the values after each line's label.
const labelWidth = 9

// render draws s as a few lines, as many for 4 hosts as for 10,000: the
// header, the batches, the current step, its hosts per phase, the hosts of
// the whole rollout, the failures named (the last few, then "+N more"),
// and the canary and hook status when there is one. It ends with a newline
// so that the terminal's cursor rests below the view.
func render(s Snapshot, st styles) string {
	var b strings.Builder
	line := func(label string, parts ...string) {
		b.WriteString(st.label.Render(pad(label)))
		b.WriteString(strings.Join(parts, " · "))
		b.WriteByte('\n')
	}

	head := "rollout of " + s.Image + " · " + hostCount(s.Hosts) + " · "
	if s.Finished {
		head += "finished in " + clock(s.Elapsed)
	} else {
		eta := "—"
		if s.ETA >= 0 {
			eta = clock(s.ETA)
		}
		head += "elapsed " + clock(s.Elapsed) + " · ETA " + eta
	}
	b.WriteString(st.title.Render(head))
	b.WriteByte('\n')

	if s.Batch == 0 {
		line("batches", "preflight: asking every agent its status")
	} else {
		cur := "batch " + strconv.Itoa(s.Batch) + "/" + strconv.Itoa(s.Batches)
		if s.Canary {
			cur += " (canary)"
		}
		line("batches", strconv.Itoa(s.BatchesDone)+"/"+strconv.Itoa(s.Batches)+" done", cur, hostCount(s.BatchHosts))
	}

	if s.Step > 0 {
		step := []string{strconv.Itoa(s.Step) + "/" + strconv.Itoa(s.Steps) + " " + s.Slot, hostCount(s.StepHosts)}
		if s.StepRunning {
			step = append(step, clock(s.StepElapsed))
		} else {
			step = append(step, "ended")
		}
		line("step", step...)
		line("phases", phases(s, st)...)
	}

	togo := max(0, s.Hosts-s.HostsDone-s.HostsFailed-s.HostsSkipped)
	hosts := []string{count(s.HostsDone) + " done", failed(s.HostsFailed, st) + " failed", count(togo) + " to go"}
	if s.HostsSkipped > 0 {
		hosts = append(hosts, count(s.HostsSkipped)+" skipped (unreachable)")
	}
	line("hosts", hosts...)

	if s.Waiting != "" {
		line("waiting", oneLine(s.Waiting))
	}
	for i := range s.FailuresShown {
		f := s.Failures[i]
		label := ""
		if i == 0 {
			label = "failures"
		}
		what := f.Host + ": "
		if f.Slot != "" {
			what += f.Slot + ": "
		}
		line(label, st.bad.Render(what+oneLine(f.Err)))
	}
	if more := s.FailuresTotal - s.FailuresShown; more > 0 {
		line("", st.dim.Render("+"+count(more)+" more"))
	}
	if s.CanaryStatus != "" || s.CanaryRolledBack > 0 {
		canary := []string{oneLine(s.CanaryStatus)}
		if s.CanaryRolledBack > 0 {
			canary = append(canary, count(s.CanaryRolledBack)+" slot(s) rolled back")
		}
		line("canary", canary...)
	}
	if s.Fleet != "" {
		line("fleet", oneLine(s.Fleet))
	}
	if s.Hook != "" {
		line("hook", oneLine(s.Hook))
	}
	return b.String()
}

// phases lists the current step's hosts by the last phase each reported,
// in the order a replacement goes through them, then those whose slot
// ended, then those that reported nothing yet.
func phases(s Snapshot, st styles) []string {
	var out []string
	seen := 0
	for i, n := range s.PhaseCounts {
		if n > 0 && i < len(s.PhaseNames) {
			out = append(out, s.PhaseNames[i]+" "+count(n))
			seen += n
		}
	}
	out = append(out, "done "+count(s.StepDone))
	if s.StepFailed > 0 {
		out = append(out, st.bad.Render("failed "+count(s.StepFailed)))
	}
	if asked := s.StepHosts - seen - s.StepDone - s.StepFailed; asked > 0 && s.StepRunning {
		out = append(out, "no phase yet "+count(asked))
	}
	return out
}

func failed(n int, st styles) string {
	if n == 0 {
		return "0"
	}
	return st.bad.Render(count(n))
}

func pad(label string) string {
	return label + strings.Repeat(" ", max(1, labelWidth-len(label)))
}

// oneLine keeps a multi-line error on the view's one line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
}

// hostCount writes "1 host", "4 hosts", "10,000 hosts".
func hostCount(n int) string {
	if n == 1 {
		return "1 host"
	}
	return count(n) + " hosts"
}

// count writes n with thousands separators: 10,000.
func count(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return s
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// clock writes d for a person: 850ms, 12.3s, 4m05s, 1h02m.
func clock(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		m := d / time.Minute
		return strconv.Itoa(int(m)) + "m" + twoDigits(int((d-m*time.Minute)/time.Second)) + "s"
	}
	d = d.Round(time.Minute)
	h := d / time.Hour
	m := (d - h*time.Hour) / time.Minute
	return strconv.Itoa(int(h)) + "h" + twoDigits(int(m)) + "m"
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}
