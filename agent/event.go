package agent

import "time"

// Phase is one step of a slot replacement.
type Phase string

const (
	PhasePreflight Phase = "preflight"
	PhaseDrain     Phase = "drain"
	PhaseStop      Phase = "stop"
	PhaseCreate    Phase = "create"  // create the new container, while the old one drains
	PhaseStart     Phase = "start"   // give the new container the slot's name, and start it
	PhaseBoot      Phase = "boot"    // start to healthy: Docker health and the agent's probe
	PhaseAddress   Phase = "address" // point HAProxy at the new container
	PhaseGate      Phase = "gate"    // a fresh HAProxy check after `health down`
	PhaseRestore   Phase = "restore" // original weight and state back
	PhaseCleanup   Phase = "cleanup" // remove the old container
	PhaseRollback  Phase = "rollback"
	PhaseSkip      Phase = "skip"
	PhaseRecover   Phase = "recover" // an earlier replacement cut off by a crash, finished or undone
	// PhasePull pulls the image, once for every slot (Slot "(image)"),
	// before anything is changed; there is no such event when the image is
	// on the host already.
	PhasePull Phase = "pull"
)

// The phases of a slot's hooks (hooks.pre_drain, hooks.post_replace).
const (
	// PhasePreDrain runs before anything of the slot is touched.
	PhasePreDrain Phase = "pre_drain"
	// PhasePostReplace runs once the new container is booted (and HAProxy
	// points at it), while the server is in maintenance: before the health
	// gate, and before any client request can reach the new container.
	PhasePostReplace Phase = "post_replace"
)

// Event reports one finished phase of one slot, or, with Progress, how far
// a phase still running has got.
type Event struct {
	Slot     string        `json:"slot"`
	Phase    Phase         `json:"phase"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Detail   string        `json:"detail,omitempty"`
	Err      string        `json:"error,omitempty"`
	// Cause is the phase's error itself, for errors.Is (ErrDrainTimeout,
	// ErrNotHealthy, ...); nil when the phase succeeded. Not serialised:
	// Err is its text.
	Cause error `json:"-"`
	// DrainTimedOut says that a drain phase reached drain.timeout: with
	// on_timeout fail Cause is ErrDrainTimeout; with shutdown the sessions
	// were cut and the phase may still succeed.
	DrainTimedOut bool `json:"drain_timed_out,omitempty"`
	// Progress says that the phase still runs (an image pull, every few
	// seconds): Detail says how far it is, Duration how long it has run.
	// The Observer is not told of it, and it does not cross gRPC as such
	// (a remote caller sees a plain event).
	Progress bool `json:"progress,omitempty"`
}

// Result is how a slot's replacement ended.
type Result string

const (
	ResultReplaced   Result = "replaced"
	ResultSkipped    Result = "skipped"     // already on the image
	ResultRolledBack Result = "rolled_back" // failed; the old container serves again
	ResultFailed     Result = "failed"      // failed, and the rollback did not fully succeed
	ResultNotRun     Result = "not_run"     // an earlier slot failed, the agent stopped, or a later rollout fenced the request
)

// SlotReport is the outcome of one slot.
type SlotReport struct {
	Slot         string                  `json:"slot"`
	Result       Result                  `json:"result"`
	OldContainer string                  `json:"old_container,omitempty"`
	NewContainer string                  `json:"new_container,omitempty"`
	OldImage     string                  `json:"old_image,omitempty"`
	Weight       int                     `json:"weight"`
	Phases       map[Phase]time.Duration `json:"phases_ns,omitempty"`
	Total        time.Duration           `json:"total_ns"`
	Err          string                  `json:"error,omitempty"`
}

// Report is the outcome of one Redeploy.
type Report struct {
	Image string        `json:"image"`
	Slots []SlotReport  `json:"slots"`
	Total time.Duration `json:"total_ns"`
}
