package live

import (
	"fmt"
	"sync"
	"time"

	"github.com/haroll/haroll/rollout"
)

// maxFailures is how many failures a Snapshot names; the rest are counted.
const maxFailures = 5

// maxPhases bounds the distinct phase names counted one by one; phases
// beyond it are counted under "other" so the counters never grow.
const maxPhases = 32

// knownPhases are the agent's phases in the order a replacement goes
// through them, so the view lists them in that order; a phase not listed
// here is appended when first seen.
var knownPhases = []string{
	"preflight", "takeover", "recover", "pull", "pre_drain", "drain", "create", "stop", "start",
	"boot", "address", "gate", "restore", "cleanup", "post_replace", "skip", "rollback",
}

// Host states within the current step, beside the phase ids 0..maxPhases-1.
const (
	stepDone   = maxPhases     // its slot_done said replaced or skipped
	stepFailed = maxPhases + 1 // its slot_done said anything else
	stepStates = maxPhases + 2
)

// Failure names one failed (host, slot) pair, or a failed hook.
type Failure struct {
	Host, Slot, Err string
}

// Tracker keeps the counters a live view is drawn from. Event updates them
// in O(1) under a short lock, with no I/O and no allocation beyond the
// first sight of a new phase name; Snapshot copies them for drawing. It is
// safe for concurrent use.
type Tracker struct {
	mu  sync.Mutex
	now func() time.Time

	image string
	hosts int
	slots int
	start time.Time
	end   time.Time // zero while running

	index map[string]int32 // host -> position in the inventory; built once

	// Per host: the step (generation) its state is from, the state in it,
	// and its outcome in the whole rollout so far (hostDone, hostFailed).
	hostGen     []uint32
	hostState   []uint8
	hostOutcome []uint8

	phaseID    map[string]uint8
	phaseNames []string // id -> name; only ever appended to

	s Snapshot // the counters themselves, copied out by Snapshot
}

// Snapshot is the state of a rollout at one moment, as a view draws it.
type Snapshot struct {
	Image   string
	Hosts   int // in the inventory
	Elapsed time.Duration
	// ETA is the estimated time left: the mean step duration so far times
	// the steps left; negative until one step ended.
	ETA      time.Duration
	Finished bool

	Batches, BatchesDone int
	Batch                int // 1-based; 0 before the first
	BatchHosts           int
	Canary               bool

	Step, Steps  int // 1-based; Step 0 before the batch's first
	Slot         string
	StepHosts    int
	StepRunning  bool
	StepElapsed  time.Duration
	StepsEnded   int
	StepDuration time.Duration // the sum over the steps that ended

	// PhaseNames[i] is the phase whose count is PhaseCounts[i]: hosts of the
	// current step whose last phase reported is that one.
	PhaseNames  []string
	PhaseCounts [maxPhases]int
	StepDone    int // hosts of the current step whose slot ended well
	StepFailed  int // and those whose slot failed

	HostsDone    int // every slot of theirs ended well
	HostsFailed  int // a slot of theirs failed
	HostsSkipped int // unreachable, left out

	Failures      [maxFailures]Failure // the last ones, oldest first
	FailuresShown int
	FailuresTotal int

	CanaryStatus     string // the canary's last status ("analysis: ...", "paused: ..."), "" if none
	CanaryRolledBack int    // canary (host, slot) pairs put back on the old image
	Hook             string // the last hook's line, "" if none
	Waiting          string // the last host waited for in this batch, "" if none
	// Fleet is the fleet operations' last status: the prepull's count, an
	// on_failure pause, the on_failure rollback's progress; "" if none.
	Fleet           string
	FleetRolledBack int

	stepStart time.Time
}

// NewTracker follows a rollout of image over hosts with slots (the slots
// each batch replaces, for the ETA before the first batch starts).
func NewTracker(image string, hosts, slots []string) *Tracker {
	return newTracker(image, hosts, slots, time.Now)
}

func newTracker(image string, hosts, slots []string, now func() time.Time) *Tracker {
	t := &Tracker{
		now: now, image: image, hosts: len(hosts), slots: len(slots), start: now(),
		index:       make(map[string]int32, len(hosts)),
		hostGen:     make([]uint32, len(hosts)),
		hostState:   make([]uint8, len(hosts)),
		hostOutcome: make([]uint8, len(hosts)),
		phaseID:     make(map[string]uint8, maxPhases),
	}
	for i, h := range hosts {
		t.index[h] = int32(i)
	}
	for _, p := range knownPhases {
		t.phase(p)
	}
	t.s.Steps = len(slots)
	return t
}

// phase returns the id of phase name, giving it one when first seen.
func (t *Tracker) phase(name string) uint8 {
	if id, ok := t.phaseID[name]; ok {
		return id
	}
	if len(t.phaseNames) >= maxPhases-1 {
		if id, ok := t.phaseID["other"]; ok {
			return id
		}
		name = "other"
	}
	id := uint8(len(t.phaseNames))
	t.phaseID[name] = id
	t.phaseNames = append(t.phaseNames, name)
	return id
}

// Event updates the counters from e; it is meant as (part of)
// rollout.Executor.Events and returns at once.
func (t *Tracker) Event(e rollout.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.s
	switch e.Kind {
	case rollout.EventSkipped:
		s.HostsSkipped++
	case rollout.EventWaiting:
		s.Waiting = e.Host + ": busy: " + e.Detail
	case rollout.EventBatchStart:
		s.Batch, s.Batches, s.BatchHosts, s.Canary = e.Batch, e.Batches, e.Hosts, e.Canary
		// Batches run one after the other; those a resumed rollout finished
		// before it started send no events.
		s.BatchesDone = e.Batch - 1
		s.Step, s.Steps, s.Slot, s.StepHosts, s.StepRunning = 0, e.Steps, "", 0, false
		s.Waiting = ""
		t.resetStep()
	case rollout.EventStepStart:
		s.Step, s.Steps, s.Slot, s.StepHosts, s.StepRunning = e.Step, e.Steps, e.Slot, e.Hosts, true
		s.stepStart = t.now()
		t.resetStep()
	case rollout.EventPhase:
		if e.Batch != s.Batch || e.Step != s.Step {
			return
		}
		i, ok := t.index[e.Host]
		if !ok {
			return
		}
		id := t.phase(e.Phase)
		if t.hostGen[i] == t.gen() {
			old := t.hostState[i]
			if old >= stepDone { // a late phase after its slot ended
				return
			}
			s.PhaseCounts[old]--
		}
		t.hostGen[i], t.hostState[i] = t.gen(), id
		s.PhaseCounts[id]++
	case rollout.EventSlotDone:
		ok := e.Result == rollout.ResultReplaced || e.Result == rollout.ResultSkipped
		if !ok {
			t.fail(e.Host, e.Slot, e.Err, e.Result)
		}
		i, known := t.index[e.Host]
		if !known {
			return
		}
		if e.Batch == s.Batch && e.Step == s.Step {
			if t.hostGen[i] == t.gen() {
				old := t.hostState[i]
				if old >= stepDone {
					return
				}
				s.PhaseCounts[old]--
			}
			t.hostGen[i] = t.gen()
			if ok {
				t.hostState[i] = stepDone
				s.StepDone++
			} else {
				t.hostState[i] = stepFailed
				s.StepFailed++
			}
		}
		switch {
		case !ok:
			t.hostFailed(i)
		case t.hostOutcome[i] == hostRunning && e.Step == e.Steps:
			t.hostOutcome[i] = hostDone
			s.HostsDone++
		}
	case rollout.EventStepEnd:
		s.StepRunning = false
		s.StepsEnded++
		s.StepDuration += e.Duration
	case rollout.EventBatchEnd:
		s.BatchesDone = e.Batch
		s.StepRunning = false
	case rollout.EventCanaryAnalysis, rollout.EventCanaryPassed, rollout.EventCanaryFailed,
		rollout.EventCanaryPaused, rollout.EventCanaryPromoted:
		s.CanaryStatus = canaryWord(e.Kind) + ": " + e.Detail
	case rollout.EventCanaryRollback:
		s.CanaryRolledBack++
		if i, ok := t.index[e.Host]; ok { // back on the old image: the rollout failed it
			t.hostFailed(i)
		}
		if e.Err != "" {
			t.fail(e.Host, e.Slot, "canary rollback: "+e.Err, e.Result)
		}
	case rollout.EventPrepull:
		s.Fleet = fmt.Sprintf("prepull: %d of %d host(s) have the image", e.Hosts, e.Steps)
		if e.Err != "" {
			t.fail(e.Host, "", "prepull: "+e.Err, "failed")
		}
	case rollout.EventPaused:
		s.Fleet = "on_failure pause: " + e.Detail
	case rollout.EventRollback:
		s.FleetRolledBack++
		s.Fleet = fmt.Sprintf("on_failure rollback: %d slot(s) put back", s.FleetRolledBack)
		if e.Err != "" {
			t.fail(e.Host, e.Slot, "on_failure rollback: "+e.Err, e.Result)
		}
	case rollout.EventHook:
		s.Hook = e.Phase + " " + clock(e.Duration)
		if e.Err != "" {
			s.Hook += " FAILED: " + e.Err
			t.fail("hook "+e.Phase, "", e.Err, "failed")
		} else {
			s.Hook += " ok"
		}
	}
}

// Host outcomes in the whole rollout so far.
const (
	hostRunning = iota // none of its slots failed, its last not done yet
	hostDone
	hostFailed
)

// hostFailed marks host i failed, once; a host counted done (a canary
// rolled back after its last step) is taken off the done.
func (t *Tracker) hostFailed(i int32) {
	switch t.hostOutcome[i] {
	case hostFailed:
		return
	case hostDone:
		t.s.HostsDone--
	}
	t.hostOutcome[i] = hostFailed
	t.s.HostsFailed++
}

// gen is the current step's generation: one per step start, so starting a
// step resets every host's state without touching them.
func (t *Tracker) gen() uint32 { return uint32(t.s.Batch)<<16 | uint32(t.s.Step) }

// resetStep zeroes the current step's counters; hostGen entries from an
// earlier step no longer match gen.
func (t *Tracker) resetStep() {
	t.s.PhaseCounts = [maxPhases]int{}
	t.s.StepDone, t.s.StepFailed = 0, 0
}

// fail records a failure in the ring of the last maxFailures.
func (t *Tracker) fail(host, slot, err, result string) {
	if err == "" {
		err = result
	}
	s := &t.s
	f := Failure{Host: host, Slot: slot, Err: err}
	if s.FailuresShown < maxFailures {
		s.Failures[s.FailuresShown] = f
		s.FailuresShown++
	} else {
		copy(s.Failures[:], s.Failures[1:])
		s.Failures[maxFailures-1] = f
	}
	s.FailuresTotal++
}

// Finish marks the rollout as ended: the elapsed time stops.
func (t *Tracker) Finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.end.IsZero() {
		t.end = t.now()
	}
}

// Snapshot returns a copy of the counters, with the elapsed time and the
// ETA computed now.
func (t *Tracker) Snapshot() Snapshot {
	t.mu.Lock()
	s := t.s
	s.PhaseNames = t.phaseNames[:len(t.phaseNames):len(t.phaseNames)]
	end := t.end
	t.mu.Unlock()
	now := end
	if now.IsZero() {
		now = t.now()
	} else {
		s.Finished = true
	}
	s.Image, s.Hosts = t.image, t.hosts
	s.Elapsed = now.Sub(t.start)
	if s.StepRunning {
		s.StepElapsed = now.Sub(s.stepStart)
	}
	s.ETA = -1
	switch {
	case s.Finished:
		s.ETA = 0
	case s.StepsEnded > 0:
		mean := s.StepDuration / time.Duration(s.StepsEnded)
		s.ETA = mean * time.Duration(s.stepsAfterCurrent())
		if s.StepRunning {
			s.ETA += max(0, mean-s.StepElapsed)
		}
	}
	return s
}

// stepsAfterCurrent counts the steps after the one running (or the last
// one that ended): those left in this batch and in the batches to come.
func (s *Snapshot) stepsAfterCurrent() int {
	return max(0, s.Steps-s.Step) + max(0, s.Batches-s.Batch)*s.Steps
}

func canaryWord(k rollout.EventKind) string {
	switch k {
	case rollout.EventCanaryAnalysis:
		return "analysis"
	case rollout.EventCanaryPassed:
		return "passed"
	case rollout.EventCanaryFailed:
		return "failed"
	case rollout.EventCanaryPaused:
		return "paused"
	}
	return "promoted"
}
