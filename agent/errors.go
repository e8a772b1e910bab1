package agent

import "errors"

var (
	// ErrUnknownSlot: a requested slot is not in the configuration.
	ErrUnknownSlot = errors.New("unknown slot")
	// ErrImageNotAllowed: the image matches none of allowed_images.
	ErrImageNotAllowed = errors.New("image not allowed")
	// ErrInvalidImage: the image reference cannot be parsed.
	ErrInvalidImage = errors.New("invalid image reference")
	// ErrPreflight: a check before touching anything failed; nothing changed.
	ErrPreflight = errors.New("preflight failed")
	// ErrMinServing: draining the slot would leave too few serving servers.
	ErrMinServing = errors.New("too few other servers serving")
	// ErrPersistence: the slot's backend keeps pinned clients on a server in
	// maintenance (`option persist`, `force-persist`), so its server cannot
	// be taken out of every selection before its container stops.
	ErrPersistence = errors.New("backend persistence defeats the drain")
	// ErrAutoRemove: the slot's container was created with --rm and would
	// have to stop before its replacement is proven (stop-first): Docker
	// would delete it, and a failed replacement could not bring it back.
	ErrAutoRemove = errors.New("container is removed when it stops (--rm)")
	// ErrDrainTimeout: sessions were still open at drain.timeout.
	ErrDrainTimeout = errors.New("drain timed out")
	// ErrNotHealthy: the new container did not prove healthy in health.timeout.
	ErrNotHealthy = errors.New("container did not become healthy")
	// ErrPullTimeout: the image was not pulled within docker.pull_timeout;
	// the pull was stopped and nothing changed.
	ErrPullTimeout = errors.New("image pull timed out")
	// ErrPullCancelled: the caller went away, or the agent is stopping,
	// while the image was pulled; the pull was stopped and nothing changed.
	ErrPullCancelled = errors.New("image pull cancelled")
	// ErrBusy: another replacement holds the host lock.
	ErrBusy = errors.New("another replacement is running on this host")
	// ErrHookFailed: a slot's pre_drain or post_replace hook did not exit 0
	// within its timeout; wrapped with the hook, the slot, the exit code and
	// the tail of its output. The slot is rolled back.
	ErrHookFailed = errors.New("hook failed")
	// ErrRollback: a failed slot could not be fully rolled back.
	ErrRollback = errors.New("rollback incomplete")
	// ErrInvalidCanary: a canary weight share outside 1..99 percent.
	ErrInvalidCanary = errors.New("invalid canary weight")
	// ErrNoCanary: Promote was asked for a slot that runs no canary.
	ErrNoCanary = errors.New("slot runs no canary")
)

// The refusals of fleet operations (fence.go).
var (
	// ErrFenced: a fleet rollout's request carries a fence token lower than
	// one the host has seen: its coordinator lost the fleet lock to a later
	// rollout, and may change nothing here. Nothing was changed.
	ErrFenced = errors.New("fenced")
	// ErrClaimed: a redeploy without a fence (a person's) on a host a fleet
	// rollout claims; break_claim (--break-claim) lets it through. Its text
	// starts "host belongs to rollout". Nothing was changed.
	ErrClaimed = errors.New("host belongs to rollout")
	// ErrInvalidFence: a Claim without a fence token (and without
	// force_release).
	ErrInvalidFence = errors.New("invalid fence")
)
