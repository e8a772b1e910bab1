package live

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/rollout"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// plainStyles draw without colour, so views compare as text.
func plainStyles() styles { return noStyles() }

// fleet names n hosts.
func fleet(n int) []string {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host-%05d:7441", i)
	}
	return hosts
}

// feeder sends the events of a rollout to a tracker as the executor would,
// moving the clock as it goes.
type feeder struct {
	t       *testing.T
	send    func(rollout.Event)
	clock   *fakeClock
	batches int
	slots   []string
}

func (f *feeder) batch(b int, canary bool, hosts int) rollout.Event {
	pos := rollout.Event{Batch: b, Batches: f.batches, Canary: canary, Steps: len(f.slots)}
	e := pos
	e.Kind, e.Hosts = rollout.EventBatchStart, hosts
	f.send(e)
	return pos
}

func (f *feeder) stepStart(pos rollout.Event, step, hosts int) rollout.Event {
	pos.Step, pos.Slot = step, f.slots[step-1]
	e := pos
	e.Kind, e.Hosts = rollout.EventStepStart, hosts
	f.send(e)
	return pos
}

func (f *feeder) phase(pos rollout.Event, host, phase string) {
	pos.Kind, pos.Host, pos.Phase, pos.Duration = rollout.EventPhase, host, phase, time.Second
	f.send(pos)
}

func (f *feeder) slotDone(pos rollout.Event, host, result, err string) {
	pos.Kind, pos.Host, pos.Result, pos.Err, pos.Duration = rollout.EventSlotDone, host, result, err, 3*time.Second
	f.send(pos)
}

func (f *feeder) stepEnd(pos rollout.Event, hosts, failed int, d time.Duration) {
	f.clock.Add(d)
	pos.Kind, pos.Hosts, pos.Failed, pos.Duration = rollout.EventStepEnd, hosts, failed, d
	f.send(pos)
}

func (f *feeder) batchEnd(pos rollout.Event, hosts, failed int) {
	pos.Kind, pos.Hosts, pos.Failed = rollout.EventBatchEnd, hosts, failed
	f.send(pos)
}

// fullStep runs a whole step on hosts: each goes through drain, boot and
// gate, then its slot ends as results says (replaced when absent).
func (f *feeder) fullStep(pos rollout.Event, step int, hosts []string, results map[string]string, d time.Duration) {
	pos = f.stepStart(pos, step, len(hosts))
	failed := 0
	for _, h := range hosts {
		for _, p := range []string{"drain", "boot", "gate"} {
			f.phase(pos, h, p)
		}
		r := results[h]
		err := ""
		if r == "" {
			r = rollout.ResultReplaced
		} else if r != rollout.ResultSkipped {
			err = "boot: health check failed: connection refused"
			failed++
		}
		f.slotDone(pos, h, r, err)
	}
	f.stepEnd(pos, len(hosts), failed, d)
}
