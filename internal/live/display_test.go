package live

import (
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"

	"github.com/haroll/haroll/rollout"
)

// screen plays out, as written to a terminal of width × height, on a
// terminal emulator and returns what the screen then shows, trailing
// blanks trimmed: escape sequences, redraws in place and all. With onlcr,
// a newline also returns the carriage, as a terminal's driver does in its
// normal mode (a pty does it itself).
func screen(t *testing.T, out string, width, height int, onlcr bool) string {
	t.Helper()
	term := vt.NewEmulator(width, height)
	defer term.Close()
	if onlcr {
		out = strings.ReplaceAll(out, "\n", "\r\n")
	}
	if _, err := term.WriteString(out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(term.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}

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
	if got := screen(t, w.String(), fileWidth, fileHeight, true); !strings.Contains(got, "hosts    2,068 done · 15 failed · 7,917 to go") {
		t.Errorf("the final view is not the last state:\n%s", got)
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
	got := screen(t, out.String(), fileWidth, fileHeight, true)
	want := `note: a line before the view
time=... level=WARN msg="slot failed"
rollout of app:v2 · 2 hosts · finished in 6s
batches  1/1 done · batch 1/1 · 2 hosts
step     1/1 web · 2 hosts · ended
phases   done 1 · failed 1
hosts    1 done · 1 failed · 0 to go
failures b:7441: web: boot: health check failed: connection refused`
	if got != want {
		t.Errorf("the screen shows:\n%s\nwant:\n%s", got, want)
	}
}
