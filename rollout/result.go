package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

// Slot results: the agent's own, the text forms of agentpb.SlotResult
// (replaced, skipped, rolled_back, failed, not_run), plus the coordinator's
// ResultError. They are values of SlotResult.Result, Event.Result and the
// state file; do not assign to them.
var (
	ResultReplaced   = agentpb.SlotResult_SLOT_RESULT_REPLACED.Name()
	ResultSkipped    = agentpb.SlotResult_SLOT_RESULT_SKIPPED.Name()     // already on the image
	ResultRolledBack = agentpb.SlotResult_SLOT_RESULT_ROLLED_BACK.Name() // failed; the old container serves again
	ResultFailed     = agentpb.SlotResult_SLOT_RESULT_FAILED.Name()      // failed, and the rollback did not fully succeed
	ResultNotRun     = agentpb.SlotResult_SLOT_RESULT_NOT_RUN.Name()     // not asked: an earlier slot or batch failed
)

// ResultError: the agent did not report (refused, lost, timed out or
// cancelled); the error says which. A slot that was started is finished or
// rolled back by the agent on its own: `haroll status` shows it. It is the
// coordinator's alone, and no agentpb.SlotResult.
const ResultError = "error"

// Host results.
const (
	HostDone    = "done"    // every slot replaced or skipped
	HostFailed  = "failed"  // a slot failed or did not report
	HostNotRun  = "not_run" // its batch did not start
	HostSkipped = "skipped" // unreachable, left out (--skip-unreachable)
)

// EventKind says what an Event marks.
type EventKind string

// The kinds of Event, in the order a rollout sends them.
const (
	EventSkipped    EventKind = "skipped"     // Host unreachable, left out of the plan
	EventWaiting    EventKind = "waiting"     // Host busy (Detail says with what); Resume waits for it
	EventBatchStart EventKind = "batch_start" // Hosts in Batch
	EventStepStart  EventKind = "step_start"  // Slot on Hosts hosts
	EventPhase      EventKind = "phase"       // a phase of Slot ended on Host
	EventSlotDone   EventKind = "slot_done"   // Slot on Host ended with Result
	EventStepEnd    EventKind = "step_end"    // Failed of Hosts failed
	EventBatchEnd   EventKind = "batch_end"   // Failed of Hosts failed

	// The canary batch's analysis and its outcome; Detail says more.
	EventCanaryAnalysis EventKind = "canary_analysis" // counters of Hosts hosts read for the window
	EventCanaryPassed   EventKind = "canary_passed"   // the figures that passed
	EventCanaryFailed   EventKind = "canary_failed"   // why; the canary hosts are rolled back
	EventCanaryPaused   EventKind = "canary_paused"   // waiting for promote or abort
	EventCanaryPromoted EventKind = "canary_promoted" // canary slots at their whole weight
	EventCanaryRollback EventKind = "canary_rollback" // Slot on Host back on the old image (Result)
	// EventHook: the hook Phase (pre, post) ended after Duration; Err
	// when it failed.
	EventHook EventKind = "hook"
)

// Event is the live progress of a rollout. Executor sends events one at a
// time, never concurrently.
type Event struct {
	Kind     EventKind     `json:"kind"`
	Time     time.Time     `json:"time"`
	Batch    int           `json:"batch,omitempty"` // 1-based
	Batches  int           `json:"batches,omitempty"`
	Canary   bool          `json:"canary,omitempty"`
	Step     int           `json:"step,omitempty"` // 1-based
	Steps    int           `json:"steps,omitempty"`
	Host     string        `json:"host,omitempty"`
	Slot     string        `json:"slot,omitempty"`
	Phase    string        `json:"phase,omitempty"`
	Result   string        `json:"result,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Detail   string        `json:"detail,omitempty"`
	Err      string        `json:"error,omitempty"`
	Hosts    int           `json:"hosts,omitempty"`
	Failed   int           `json:"failed,omitempty"`
}

// Result is the outcome of a rollout.
type Result struct {
	Image   string        `json:"image"`
	Slots   []string      `json:"slots"`
	Plan    Plan          `json:"plan"`
	Hosts   []HostResult  `json:"hosts"` // inventory order
	Batches []BatchResult `json:"batches"`
	Totals  Totals        `json:"totals"`
	Total   time.Duration `json:"total_ns"`
	// Stopped says why batches were left unrun, if they were.
	Stopped string `json:"stopped,omitempty"`
	// RolledBack is the hosts of earlier batches on_failure: rollback put
	// wholly back on their old image.
	RolledBack int `json:"rolled_back,omitempty"`
	// Resumed is the number of (host, slot) pairs an earlier run finished,
	// taken from the state file by Resume and not asked again.
	Resumed int `json:"resumed,omitempty"`
	// StateWrites are the state file's fsync'd writes and their durations.
	StateWrites StateWrites `json:"state_writes"`
	Error       string      `json:"error,omitempty"`
}

// HostResult is one host's outcome, slot by slot.
type HostResult struct {
	Host   string       `json:"host"`
	Batch  int          `json:"batch,omitempty"` // 1-based; 0 when skipped
	Result string       `json:"result"`
	Slots  []SlotResult `json:"slots,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// SlotResult is one slot's outcome on one host.
type SlotResult struct {
	Slot     string                   `json:"slot"`
	Result   string                   `json:"result"`
	Duration time.Duration            `json:"duration_ns"`
	Phases   map[string]time.Duration `json:"phases_ns,omitempty"`
	Error    string                   `json:"error,omitempty"`
	// OldImage is what the slot ran before, as the agent reported it.
	OldImage string `json:"old_image,omitempty"`
	// Image is what the slot runs at the end, as far as the coordinator
	// knows ("" when it cannot tell: the slot failed and its rollback did
	// not report; `haroll status` on the host says).
	Image string `json:"image,omitempty"`
}

// BatchResult is one batch's timing and outcome.
type BatchResult struct {
	Batch    int           `json:"batch"`
	Canary   bool          `json:"canary,omitempty"`
	Hosts    int           `json:"hosts"`
	Failed   int           `json:"failed"`
	Start    time.Time     `json:"start,omitzero"`
	Duration time.Duration `json:"duration_ns"`
	Run      bool          `json:"run"`
}

// Totals counts hosts by result.
type Totals struct {
	Hosts   int `json:"hosts"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	NotRun  int `json:"not_run"`
	Skipped int `json:"skipped"`
}

// slotOK reports whether a slot result counts as a success.
func slotOK(result string) bool { return result == ResultReplaced || result == ResultSkipped }

func notRun(slots []string) []SlotResult {
	out := make([]SlotResult, len(slots))
	for i, s := range slots {
		out[i] = SlotResult{Slot: s, Result: ResultNotRun}
	}
	return out
}

// hostResults sums each host up, in inventory order.
func (r *run) hostResults(hosts []string, plan Plan) []HostResult {
	batchOf := map[string]int{}
	for bi, b := range plan.Batches {
		for _, h := range b.Hosts {
			batchOf[h] = bi + 1
		}
	}
	out := make([]HostResult, 0, len(hosts))
	for _, h := range hosts {
		hr := HostResult{Host: h, Batch: batchOf[h], Result: HostNotRun}
		if why, ok := r.skipped[h]; ok {
			hr.Result, hr.Error = HostSkipped, why
			out = append(out, hr)
			continue
		}
		hr.Slots = r.results[h]
		for i := range hr.Slots {
			if s := &hr.Slots[i]; s.Image == "" && s.Result == ResultNotRun {
				s.Image = r.statusImage(h, s.Slot)
			}
		}
		ran := false
		for _, s := range hr.Slots {
			if s.Result == ResultNotRun {
				continue
			}
			ran = true
			if !slotOK(s.Result) && hr.Result != HostFailed {
				hr.Result, hr.Error = HostFailed, s.Error
			}
		}
		if ran && hr.Result == HostNotRun {
			hr.Result = HostDone
		}
		out = append(out, hr)
	}
	return out
}

func totals(hosts []HostResult) Totals {
	t := Totals{Hosts: len(hosts)}
	for _, h := range hosts {
		switch h.Result {
		case HostDone:
			t.Done++
		case HostFailed:
			t.Failed++
		case HostNotRun:
			t.NotRun++
		case HostSkipped:
			t.Skipped++
		}
	}
	return t
}

// listErrors formats a multierror with at most maxListedErrors entries.
func listErrors(es []error) string {
	var b strings.Builder
	for i, err := range es {
		if i == maxListedErrors {
			fmt.Fprintf(&b, "\n  ... and %d more", len(es)-i)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}
