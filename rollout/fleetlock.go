package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The fleet lock: one rollout at a time over a fleet. A Store hands it out
// (Locker); the coordinator takes it before the preflight and holds it until
// the rollout ended, checking it before every step (Lease.Check), and
// carries its token to the agents in every request (agentpb.Fence), where a
// request with a lower token than one already seen is refused.

// Rollout kinds: what a LockInfo's rollout, and a fence, are for.
const (
	KindRollout  = "rollout"
	KindRollback = "rollback"
)

// LockInfo describes a hold of the fleet lock: who, why, since when, for
// which rollout.
type LockInfo struct {
	RolloutID string `json:"rollout_id"`
	// Token rises with every acquisition of the lock: a nanosecond clock
	// reading, and at least one above the last token the store gave out.
	Token   uint64    `json:"token"`
	Holder  string    `json:"holder"` // user@machine
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since"`
	Kind    string    `json:"kind"` // KindRollout or KindRollback
	Image   string    `json:"image,omitempty"`
	// Store says where the lock is: the lock file's path, or etcd's key.
	Store string `json:"store"`
	// Expires, when set, is when the lock lapses unless its holder renews
	// it (etcd's lease); a file lock lasts as long as its holder's process.
	Expires time.Time `json:"expires,omitempty"`
}

// String is the holder's description an operator reads in a refusal.
func (l LockInfo) String() string {
	s := fmt.Sprintf("%s %s held by %s since %s", l.Kind, l.RolloutID, l.Holder, l.Since.Format(time.RFC3339))
	if l.Image != "" {
		s += " (image " + l.Image + ")"
	}
	if l.Message != "" {
		s += fmt.Sprintf(": %q", l.Message)
	}
	return s
}

// ErrLocked: the fleet lock is held by another rollout. The error is a
// *LockedError that names the holder.
var ErrLocked = errors.New("the fleet is locked by another rollout")

// ErrLockLost: the coordinator no longer holds the fleet lock (its lease
// lapsed, it was released by `haroll rollout lock release`, or the store
// cannot be reached to tell): the rollout stops before its next step.
var ErrLockLost = errors.New("the fleet lock was lost")

// LockedError is ErrLocked with the lock's holder.
type LockedError struct {
	Holder LockInfo
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v: %s (at %s); wait for it with --lock-wait, or if its holder is gone: haroll rollout lock release", ErrLocked, e.Holder, e.Holder.Store)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lease is a held fleet lock.
type Lease interface {
	Info() LockInfo
	// Check returns nil while the lock is still held (asking the store),
	// else an error wrapping ErrLockLost.
	Check(ctx context.Context) error
	// Release gives the lock back; releasing twice is not an error.
	Release(ctx context.Context) error
}

// Locker hands out the fleet lock.
type Locker interface {
	// Acquire takes the lock for info (RolloutID, Holder, Message, Kind,
	// Image; the Locker sets Token, Since, Store), waiting up to wait for a
	// holder to let go (0: not at all). A lock held by another is a
	// *LockedError.
	Acquire(ctx context.Context, info LockInfo, wait time.Duration) (Lease, error)
	// Status is the lock's holder, or nil when it is free.
	Status(ctx context.Context) (*LockInfo, error)
	// ForceRelease frees the lock whoever holds it and returns who did (nil:
	// it was free). The holder finds it lost at its next check.
	ForceRelease(ctx context.Context) (*LockInfo, error)
}

// RolloutRecord is one rollout in the fleet's history index: what the store
// keeps of each rollout once it ended (the agents keep each replacement).
type RolloutRecord struct {
	RolloutID string    `json:"rollout_id"`
	Token     uint64    `json:"token"`
	Kind      string    `json:"kind"`
	Image     string    `json:"image,omitempty"` // "" for a rollback to each slot's previous image
	Holder    string    `json:"holder"`
	Message   string    `json:"message,omitempty"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended"`
	Outcome   string    `json:"outcome"` // done, failed, stopped, refused
	Stopped   string    `json:"stopped,omitempty"`
	Hosts     int       `json:"hosts"`
	Done      int       `json:"hosts_done"`
	Failed    int       `json:"hosts_failed"`
	// RolledBack: hosts of earlier batches put back (on_failure: rollback).
	RolledBack int `json:"hosts_rolled_back,omitempty"`
}

// On failure: what a rollout does when its failures pass max_failures
// (on_failure, --on-failure).
const (
	OnFailureStop     = "stop"     // no further batch; earlier batches stay on the new image
	OnFailureRollback = "rollback" // no further batch; earlier batches' hosts are put back
	OnFailurePause    = "pause"    // wait for `haroll rollout promote` (go on) or `abort` (stop)
)

// holderInfoWait bounds how long a refusal waits for a holder that has
// just taken the lock to write who it is (its LockInfo goes in right after
// the lock itself): a refusal names the holder.
const holderInfoWait = 2 * time.Second

// holderOf is status's answer once it names the holder, or once
// holderInfoWait has passed (then it says "(starting)"), or nil when the
// lock is free.
func holderOf(ctx context.Context, status func(context.Context) (*LockInfo, error)) (*LockInfo, error) {
	deadline := time.Now().Add(holderInfoWait)
	for {
		info, err := status(ctx)
		if err != nil || info == nil || info.RolloutID != "(starting)" || time.Now().After(deadline) {
			return info, err
		}
		select {
		case <-ctx.Done():
			return info, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}
