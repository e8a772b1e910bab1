package live

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/rollout"
)

// blockingWriter holds every Write until released, like a terminal or a
// pipe nobody reads; entered is closed at the first Write.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func newBlockingWriter() *blockingWriter {
	return &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *blockingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// recorded plays the 10,000-host rollout into a slice.
func recorded(t testing.TB) []rollout.Event {
	var events []rollout.Event
	tenThousand(t, func(e rollout.Event) { events = append(events, e) }, newFakeClock())
	return events
}

func TestPlainEventsReturnWhileTheWriterIsBlockedAndNoLineIsLost(t *testing.T) {
	hosts, slots := fleet(10000), []string{"web", "api", "worker"}
	events := recorded(t)
	var want bytes.Buffer
	ref := rollout.NewProgress(&want, hosts, slots)
	want.WriteString("note: before the first event\n")
	for _, e := range events {
		ref.Event(e)
	}

	w := newBlockingWriter()
	p := NewPlain(w, hosts, slots)
	p.Writer().Write([]byte("note: before the first event\n")) //nolint:errcheck
	p.Event(events[0])
	select {
	case <-w.entered: // the drain is now stuck in Write
	case <-time.After(10 * time.Second):
		t.Fatal("the plain sink never wrote its first line")
	}
	fed := make(chan time.Duration)
	go func() {
		var slowest time.Duration
		for _, e := range events[1:] {
			t0 := time.Now()
			p.Event(e)
			slowest = max(slowest, time.Since(t0))
		}
		fed <- slowest
	}()
	select {
	case slowest := <-fed:
		t.Logf("%d events fed while the writer was blocked; the slowest Event took %s", len(events), slowest)
	case <-time.After(30 * time.Second):
		t.Fatal("Event waited for the blocked writer")
	}
	close(w.release)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.String(); got != want.String() {
		t.Errorf("the plain sink wrote %d bytes, rollout.Progress %d; first difference at byte %d",
			len(got), want.Len(), firstDiff(got, want.String()))
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPlainLinesReachTheWriterWithinAMomentWithoutClose(t *testing.T) {
	var out syncBuffer
	p := NewPlain(&out, []string{"a:7441"}, []string{"web"})
	defer p.Close()
	p.Event(rollout.Event{Kind: rollout.EventBatchStart, Batch: 1, Batches: 1, Hosts: 1, Steps: 1})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "batch 1/1  start: 1 host(s), 1 slot(s) each\n") {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s the line is still not written: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestPlainCloseReturnsTheErrorWritingTheProgress(t *testing.T) {
	p := NewPlain(failingWriter{}, []string{"a:7441"}, []string{"web"})
	p.Event(rollout.Event{Kind: rollout.EventBatchStart, Batch: 1, Batches: 1, Hosts: 1, Steps: 1})
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("Close = %v, want the write error", err)
	}
	if err := p.Close(); err == nil {
		t.Error("a second Close forgot the error")
	}
}

func TestPlainEventAllocatesNothingPerEvent(t *testing.T) {
	events := recorded(t)
	w := newBlockingWriter() // the drain, stuck in Write, allocates nothing meanwhile
	p := NewPlain(w, fleet(10000), []string{"web", "api", "worker"})
	defer func() {
		close(w.release)
		p.Close()
	}()
	p.Event(events[0])
	<-w.entered
	i := 0
	if n := testing.AllocsPerRun(5000, func() { p.Event(events[i%len(events)]); i++ }); n != 0 {
		t.Errorf("%v allocations per event, want 0 (one chunk per %d events)", n, chunkSize)
	}
}
