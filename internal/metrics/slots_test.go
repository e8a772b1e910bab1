package metrics

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haroll/haroll/agent"
)

// statusSource is a fake agent: Status returns slots, or blocks while hang
// is open (ignoring its context, as a wedged socket call might).
type statusSource struct {
	mu    sync.Mutex
	slots []agent.SlotStatus
	err   error
	busy  string
	hang  chan struct{}
	reads int
}

func (f *statusSource) Status(ctx context.Context) ([]agent.SlotStatus, error) {
	f.mu.Lock()
	f.reads++
	hang := f.hang
	f.mu.Unlock()
	if hang != nil {
		<-hang
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.slots, f.err
}

func (f *statusSource) Busy() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.busy
}

func (f *statusSource) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func twoSlots() []agent.SlotStatus {
	return []agent.SlotStatus{
		{Slot: "app-1", Backend: "app", Server: "s1", ContainerID: "abc", Image: "app:v2", Running: true, Status: "UP", Weight: 7, Scur: 3},
		{Slot: "app-2", Backend: "app", Server: "s2", ContainerID: "def", Image: "app:v1", Running: true, Status: "DOWN 1/2", Weight: 0},
	}
}

func TestAScrapeReportsEachSlotAsHAProxyAndDockerSeeIt(t *testing.T) {
	src := &statusSource{slots: twoSlots(), busy: "redeploy of app:v2"}
	want := `
# HELP haroll_agent_busy 1 while a replacement runs on the host (this agent's or another holding the host lock).
# TYPE haroll_agent_busy gauge
haroll_agent_busy 1
# HELP haroll_slot_image_info The image the slot's container runs, as a label of a series whose value is 1.
# TYPE haroll_slot_image_info gauge
haroll_slot_image_info{image="app:v1",slot="app-2"} 1
haroll_slot_image_info{image="app:v2",slot="app-1"} 1
# HELP haroll_slot_sessions Current sessions on the slot's server (scur).
# TYPE haroll_slot_sessions gauge
haroll_slot_sessions{backend="app",server="s1",slot="app-1"} 3
haroll_slot_sessions{backend="app",server="s2",slot="app-2"} 0
# HELP haroll_slot_status The slot's server status in HAProxy (UP, DOWN, DRAIN, MAINT, NOLB, ...), as a label of a series whose value is 1.
# TYPE haroll_slot_status gauge
haroll_slot_status{backend="app",server="s1",slot="app-1",status="UP"} 1
haroll_slot_status{backend="app",server="s2",slot="app-2",status="DOWN"} 1
# HELP haroll_slot_up 1 when HAProxy reports the slot's server UP (checks passing, serving unless drained), else 0.
# TYPE haroll_slot_up gauge
haroll_slot_up{backend="app",server="s1",slot="app-1"} 1
haroll_slot_up{backend="app",server="s2",slot="app-2"} 0
# HELP haroll_slot_weight The slot's server weight in HAProxy (0 while drained).
# TYPE haroll_slot_weight gauge
haroll_slot_weight{backend="app",server="s1",slot="app-1"} 7
haroll_slot_weight{backend="app",server="s2",slot="app-2"} 0
# HELP haroll_status_up 1 when this scrape read the slots' status from HAProxy and Docker in time, else 0 (and no haroll_slot_* series).
# TYPE haroll_status_up gauge
haroll_status_up 1
`
	err := testutil.CollectAndCompare(NewSlots(src, time.Second), strings.NewReader(want),
		"haroll_agent_busy", "haroll_slot_image_info", "haroll_slot_sessions", "haroll_slot_status", "haroll_slot_up", "haroll_slot_weight", "haroll_status_up")
	if err != nil {
		t.Fatal(err)
	}
}

func TestASlotHAProxyCouldNotReadHasNoWeight(t *testing.T) {
	slots := twoSlots()
	slots[1].Status, slots[1].Weight, slots[1].Err = "", 0, "[no such server]"
	c := NewSlots(&statusSource{slots: slots}, time.Second)
	if n := testutil.CollectAndCount(c, "haroll_slot_weight"); n != 1 {
		t.Errorf("%d weight series, want 1 (app-1 only)", n)
	}
	if n := testutil.CollectAndCount(c, "haroll_slot_container_running"); n != 2 {
		t.Errorf("%d running series, want 2", n)
	}
}

func TestNothingReadableIsStatusDown(t *testing.T) {
	slots := []agent.SlotStatus{{Slot: "app-1", Backend: "app", Server: "s1", Err: "unreachable"}}
	c := NewSlots(&statusSource{slots: slots, err: errors.New("no slot could be read")}, time.Second)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if v := gather(t, reg, "haroll_status_up"); v != 0 {
		t.Errorf("haroll_status_up = %v, want 0", v)
	}
}

func TestAScrapeIsBoundedWhenTheStatusReadHangs(t *testing.T) {
	src := &statusSource{slots: twoSlots(), hang: make(chan struct{})}
	c := NewSlots(src, 100*time.Millisecond)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	for i := range 3 {
		begin := time.Now()
		if v := gather(t, reg, "haroll_status_up"); v != 0 {
			t.Fatalf("scrape %d: haroll_status_up = %v during a hang, want 0", i, v)
		}
		if took := time.Since(begin); took > time.Second {
			t.Fatalf("scrape %d took %s, want about the 100ms timeout", i, took)
		} else {
			t.Logf("scrape %d during the hang took %s", i, took.Round(time.Millisecond))
		}
		if n := testutil.CollectAndCount(c, "haroll_slot_weight"); n != 0 {
			t.Fatalf("%d weight series during a hang, want none", n)
		}
	}
	if n := src.readCount(); n != 1 {
		t.Errorf("%d status reads started during the hang, want 1 (the hung one, joined)", n)
	}

	close(src.hang) // the socket answers again
	deadline := time.Now().Add(2 * time.Second)
	for gather(t, reg, "haroll_status_up") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("haroll_status_up stayed 0 after the hang ended")
		}
	}
}

// gather scrapes reg and returns the value of the unlabelled gauge name.
func gather(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s in the scrape", name)
	return 0
}

func TestStatusLabelsKeepTheStateOnly(t *testing.T) {
	for in, want := range map[string]string{
		"UP": "UP", "UP 1/3": "UP", "DOWN 1/2": "DOWN", "DRAIN": "DRAIN", "MAINT (via app/s1)": "MAINT", "no check": "no check", "NOLB": "NOLB",
	} {
		if got := statusLabel(in); got != want {
			t.Errorf("statusLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAWedgedSlotIsShownUntilItsJournalIsSettled(t *testing.T) {
	slots := twoSlots()
	slots[0].Status, slots[0].Weight = "MAINT", 7
	slots[0].Pending = &agent.SlotPending{Image: "app:broken", Phase: agent.PhaseStart, Wedged: true, Error: "rollback incomplete: the old container is gone"}
	src := &statusSource{slots: slots}
	want := `
# HELP haroll_slot_pending 1 while the journal holds a replacement of the slot that has not ended (one running now included), else 0.
# TYPE haroll_slot_pending gauge
haroll_slot_pending{backend="app",server="s1",slot="app-1"} 1
haroll_slot_pending{backend="app",server="s2",slot="app-2"} 0
# HELP haroll_slot_wedged 1 while the journal holds a replacement of the slot that could not be finished or rolled back: the slot needs the operator (` + "`haroll recover --status`" + `), else 0.
# TYPE haroll_slot_wedged gauge
haroll_slot_wedged{backend="app",server="s1",slot="app-1"} 1
haroll_slot_wedged{backend="app",server="s2",slot="app-2"} 0
`
	c := NewSlots(src, time.Second)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "haroll_slot_pending", "haroll_slot_wedged"); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.slots = twoSlots() // taken over, or abandoned
	src.mu.Unlock()
	if err := testutil.CollectAndCompare(c, strings.NewReader(strings.ReplaceAll(want, "slot=\"app-1\"} 1", "slot=\"app-1\"} 0")), "haroll_slot_pending", "haroll_slot_wedged"); err != nil {
		t.Fatal(err)
	}
}
