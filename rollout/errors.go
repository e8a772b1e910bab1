package rollout

import "errors"

// The errors Executor.Run and Client return, wrapped with the host, slot
// and the agent's message; test with errors.Is.
var (
	// ErrPreflight: the rollout was refused before any host was touched.
	ErrPreflight = errors.New("preflight failed, no host was touched")
	// ErrUnreachable: the agent did not answer (dial, TLS or Status failed).
	ErrUnreachable = errors.New("agent unreachable")
	// ErrMissingSlot: a host does not have a slot the rollout replaces.
	ErrMissingSlot = errors.New("slot missing on host")
	// ErrBusy: another replacement holds the host.
	ErrBusy = errors.New("host busy")
	// ErrRefused: the agent refused the request before touching a slot
	// (bad image or slot, image not allowed, its own preflight).
	ErrRefused = errors.New("agent refused")
	// ErrSlotFailed: the agent reported that the slot was not replaced.
	ErrSlotFailed = errors.New("slot failed")
	// ErrNoReport: the agent's stream ended without a report.
	ErrNoReport = errors.New("no report from agent")
	// ErrStepTimeout: a host did not report within the step timeout; the
	// agent goes on with (or rolls back) the slot on its own.
	ErrStepTimeout = errors.New("step timeout")
	// ErrFailed: at least one host failed; Result says which.
	ErrFailed = errors.New("rollout failed")
	// ErrNothingToResume: --resume found no state file, or one whose
	// rollout is complete.
	ErrNothingToResume = errors.New("nothing to resume")
	// ErrImageMismatch: --resume was given another image than the one the
	// unfinished rollout rolls.
	ErrImageMismatch = errors.New("image differs from the unfinished rollout's")
	// ErrCanaryFailed: the canary failed its analysis, a canary host failed
	// its slot, or a person aborted it; the canary hosts were rolled back.
	ErrCanaryFailed = errors.New("canary failed")
	// ErrHookFailed: a rollout hook (hooks.pre, hooks.post) did not exit 0
	// within its timeout; wrapped with the hook, the exit code and the tail
	// of its output.
	ErrHookFailed = errors.New("hook failed")
	// ErrState: the rollout's state could not be written (the state file,
	// or etcd: unreachable, or the fleet lock lost); the rollout stops
	// before its next step, and what it recorded so far can be resumed.
	ErrState = errors.New("rollout state not written")
)
