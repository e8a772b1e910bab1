package metrics

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haroll/haroll/agent"
)

// StatusReader is what Slots reads at scrape time (an *agent.Agent).
type StatusReader interface {
	Status(ctx context.Context) ([]agent.SlotStatus, error)
	Busy() string
}

// DefaultStatusTimeout bounds the status read of one scrape: well inside
// Prometheus's default scrape timeout of 10 s.
const DefaultStatusTimeout = 2 * time.Second

// Slots is a prometheus.Collector that reports each slot's state, weight and
// sessions as HAProxy and Docker see them, read when Prometheus scrapes.
//
// A scrape never waits longer than the timeout for the read: when HAProxy or
// Docker hangs, it reports haroll_status_up 0 and no slot series rather
// than stale ones. At most one read runs at a time: a scrape that finds one
// still running (a hung socket that ignores its deadline) waits for that one
// instead of starting another, so hung reads do not pile up.
type Slots struct {
	src     StatusReader
	timeout time.Duration

	mu   sync.Mutex
	read *statusRead // in flight; nil when none
}

// statusRead is one read of the slots' status; its fields are set before
// done is closed.
type statusRead struct {
	done  chan struct{}
	slots []agent.SlotStatus
	err   error
	busy  bool
	took  time.Duration
}

var (
	slotLabels = []string{"slot", "backend", "server"}

	descUp = prometheus.NewDesc("haroll_status_up",
		"1 when this scrape read the slots' status from HAProxy and Docker in time, else 0 (and no haroll_slot_* series).", nil, nil)
	descReadTime = prometheus.NewDesc("haroll_status_read_duration_seconds",
		"How long this scrape's status read took (the timeout when it did not finish).", nil, nil)
	descBusy = prometheus.NewDesc("haroll_agent_busy",
		"1 while a replacement runs on the host (this agent's or another holding the host lock).", nil, nil)
	descWeight = prometheus.NewDesc("haroll_slot_weight",
		"The slot's server weight in HAProxy (0 while drained).", slotLabels, nil)
	descSlotUp = prometheus.NewDesc("haroll_slot_up",
		"1 when HAProxy reports the slot's server UP (checks passing, serving unless drained), else 0.", slotLabels, nil)
	descStatus = prometheus.NewDesc("haroll_slot_status",
		"The slot's server status in HAProxy (UP, DOWN, DRAIN, MAINT, NOLB, ...), as a label of a series whose value is 1.",
		append(slotLabels, "status"), nil)
	descSessions = prometheus.NewDesc("haroll_slot_sessions",
		"Current sessions on the slot's server (scur).", slotLabels, nil)
	descRunning = prometheus.NewDesc("haroll_slot_container_running",
		"1 when the slot's container runs, else 0.", slotLabels, nil)
	descImage = prometheus.NewDesc("haroll_slot_image_info",
		"The image the slot's container runs, as a label of a series whose value is 1.", []string{"slot", "image"}, nil)
	descPending = prometheus.NewDesc("haroll_slot_pending",
		"1 while the journal holds a replacement of the slot that has not ended (one running now included), else 0.", slotLabels, nil)
	descWedged = prometheus.NewDesc("haroll_slot_wedged",
		"1 while the journal holds a replacement of the slot that could not be finished or rolled back: the slot needs the operator (`haroll recover --status`), else 0.", slotLabels, nil)
)

// NewSlots reads src at every scrape, for at most timeout (<= 0 means
// DefaultStatusTimeout). Register it on the registry that is served.
func NewSlots(src StatusReader, timeout time.Duration) *Slots {
	if timeout <= 0 {
		timeout = DefaultStatusTimeout
	}
	return &Slots{src: src, timeout: timeout}
}

// Describe sends every metric Collect may send.
func (s *Slots) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descReadTime, descBusy, descWeight, descSlotUp, descStatus, descSessions, descRunning, descImage, descPending, descWedged} {
		ch <- d
	}
}

// Collect reads the status, within the timeout, and sends what it read.
func (s *Slots) Collect(ch chan<- prometheus.Metric) {
	r := s.start()
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case <-r.done:
	case <-timer.C:
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		ch <- prometheus.MustNewConstMetric(descReadTime, prometheus.GaugeValue, s.timeout.Seconds())
		return
	}
	up := 1.0
	if r.err != nil && !anyRead(r.slots) {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descReadTime, prometheus.GaugeValue, r.took.Seconds())
	ch <- prometheus.MustNewConstMetric(descBusy, prometheus.GaugeValue, boolValue(r.busy))
	for _, st := range r.slots {
		lv := []string{st.Slot, st.Backend, st.Server}
		// The journal is local: read whether HAProxy and Docker answer.
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, boolValue(st.Pending != nil), lv...)
		ch <- prometheus.MustNewConstMetric(descWedged, prometheus.GaugeValue, boolValue(st.Pending != nil && st.Pending.Wedged), lv...)
		if st.Status != "" { // HAProxy answered for this slot
			ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(st.Weight), lv...)
			ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(st.Scur), lv...)
			status := statusLabel(st.Status)
			ch <- prometheus.MustNewConstMetric(descSlotUp, prometheus.GaugeValue, boolValue(status == "UP"), lv...)
			ch <- prometheus.MustNewConstMetric(descStatus, prometheus.GaugeValue, 1, append(lv, status)...)
		}
		if st.ContainerID != "" { // Docker answered for this slot
			ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, boolValue(st.Running), lv...)
			ch <- prometheus.MustNewConstMetric(descImage, prometheus.GaugeValue, 1, st.Slot, st.Image)
		}
	}
}

// start returns the read in flight, or starts one.
func (s *Slots) start() *statusRead {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read != nil {
		return s.read
	}
	r := &statusRead{done: make(chan struct{})}
	s.read = r
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		t := time.Now()
		r.slots, r.err = s.src.Status(ctx)
		r.busy = s.src.Busy() != ""
		r.took = time.Since(t)
		s.mu.Lock()
		s.read = nil
		s.mu.Unlock()
		close(r.done)
	}()
	return r
}

// anyRead reports whether HAProxy or Docker answered for some slot.
func anyRead(slots []agent.SlotStatus) bool {
	for _, st := range slots {
		if st.Status != "" || st.ContainerID != "" {
			return true
		}
	}
	return false
}

// statusLabel keeps the state of an HAProxy status and drops the check
// progress ("UP 1/3" is UP going down, "DOWN 1/2" DOWN going up) and the
// tracked server ("MAINT (via app/s1)"), so that the label has few values.
func statusLabel(s string) string {
	if strings.HasPrefix(s, "no check") {
		return "no check"
	}
	if i := strings.IndexByte(s, ' '); i > 0 {
		return s[:i]
	}
	return s
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
