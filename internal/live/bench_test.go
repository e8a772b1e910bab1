package live

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/haroll/haroll/rollout"
)

// BenchmarkEventsAt10000Hosts measures what the rollout pays per event,
// in the Events callback, at 10,000 hosts: the events of
// TestTheViewOfTenThousandHostsCountsThePhasesAndNamesTheLastFailures,
// played over and over. "direct" is what the executor called before: a
// line formatted and written unbuffered, here to /dev/null (a terminal or
// a pipe costs more, and can block).
func BenchmarkEventsAt10000Hosts(b *testing.B) {
	events := recorded(b)
	hosts, slots := fleet(10000), []string{"web", "api", "worker"}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	for _, bc := range []struct {
		name string
		open func() (func(rollout.Event), func() error)
	}{
		{"live", func() (func(rollout.Event), func() error) {
			l := start(io.Discard, NewTracker("app:v2", hosts, slots), noStyles(), redrawEvery)
			return l.Event, l.Close
		}},
		{"plain", func() (func(rollout.Event), func() error) {
			p := NewPlain(io.Discard, hosts, slots)
			return p.Event, p.Close
		}},
		{"direct", func() (func(rollout.Event), func() error) {
			return rollout.NewProgress(devNull, hosts, slots).Event, func() error { return nil }
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			event, closeSink := bc.open()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				event(events[i%len(events)])
				i++
			}
			b.StopTimer()
			t0 := time.Now()
			if err := closeSink(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(t0).Microseconds()), "close-µs")
		})
	}
}
