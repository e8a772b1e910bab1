package live

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/rollout"
)

// ansiSeq matches the escape sequences a terminal interprets.
var ansiSeq = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07`)

func stripANSI(s string) string { return ansiSeq.ReplaceAllString(s, "") }

func TestLiveEventsReturnWhileTheTerminalIsBlocked(t *testing.T) {
	w := newBlockingWriter()
	clock := newFakeClock()
	tr := newTracker("app:v2", fleet(10000), []string{"web", "api", "worker"}, clock.Now)
	l := start(w, tr, plainStyles(), 10*time.Millisecond)
	select {
	case <-w.entered: // Bubble Tea is now stuck writing its first frame
	case <-time.After(10 * time.Second):
		t.Fatal("the live view never drew")
	}
	fed := make(chan struct{})
	go func() {
		tenThousand(t, l.Event, clock)
		close(fed)
	}()
	select {
	case <-fed:
	case <-time.After(30 * time.Second):
		t.Fatal("Event waited for the blocked terminal")
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if out := stripANSI(w.String()); !strings.Contains(out, "hosts    2,068 done · 15 failed · 7,917 to go") {
		t.Errorf("the final view is not the last state:\n%s", out)
	}
}

func TestLiveLeavesItsFinalViewPrintedWithTheLinesWrittenAboveIt(t *testing.T) {
	var out syncBuffer
	clock := newFakeClock()
	hosts := []string{"a:7441", "b:7441"}
	tr := newTracker("app:v2", hosts, []string{"web"}, clock.Now)
	l := start(&out, tr, plainStyles(), 10*time.Millisecond)
	f := &feeder{t: t, send: l.Event, clock: clock, batches: 1, slots: []string{"web"}}
	l.Writer().Write([]byte("note: a line before the view\n")) //nolint:errcheck
	pos := f.batch(1, false, 2)
	f.fullStep(pos, 1, hosts, map[string]string{"b:7441": rollout.ResultRolledBack}, 5*time.Second)
	f.batchEnd(pos, 2, 1)
	l.Writer().Write([]byte("time=... level=WARN msg=\"slot failed\"")) //nolint:errcheck // no newline: Close prints it all the same
	clock.Add(time.Second)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	got := stripANSI(out.String())
	note := strings.Index(got, "note: a line before the view")
	warn := strings.Index(got, `msg="slot failed"`)
	final := strings.LastIndex(got, "rollout of app:v2 · 2 hosts · finished in 6s")
	if note < 0 || warn < 0 || final < 0 || note > final || warn > final {
		t.Fatalf("want the note and the log line, then the final view; got:\n%s", got)
	}
	for _, want := range []string{"hosts    1 done · 1 failed · 0 to go", "failures b:7441: web: boot: health check failed"} {
		if !strings.Contains(got[final:], want) {
			t.Errorf("the final view lacks %q:\n%s", want, got[final:])
		}
	}
	if !strings.HasSuffix(out.String(), "\n") && !strings.HasSuffix(strings.TrimRight(got, " \r"), "\n") {
		t.Errorf("the output does not end on a line of its own: %q", got[max(0, len(got)-80):])
	}
}
