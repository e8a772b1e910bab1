package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haroll/haroll/internal/atomicfile"
)

// fenceFile holds the highest fence token the host has seen and the claim
// of the fleet rollout it belongs to. It is written (atomically, synced)
// before the request that raised the token acts, and kept across restarts:
// a coordinator that lost its lock must stay refused after the agent
// restarts, and a claim must outlive one.
const fenceFile = "fence.json"

// fenceLockFile serialises the read-modify-write of fenceFile between the
// agent's requests and between processes (the daemon, an in-process CLI).
// It is not the host lock: a fenced Pull or Claim runs beside a
// replacement.
const fenceLockFile = "fence.lock"

// DefaultClaimTTL is how long a fenced request claims the host when its
// fence does not say (claim_ttl 0).
const DefaultClaimTTL = time.Hour

// Fence is carried by every request of a fleet rollout (agentpb.Fence):
// which rollout asks, under which acquisition of the fleet lock (Token).
type Fence struct {
	Token     uint64    `json:"token"`
	RolloutID string    `json:"rollout_id"`
	Holder    string    `json:"holder,omitempty"`
	Message   string    `json:"message,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	// ClaimTTL: how long the host stays claimed after the request; 0 is
	// DefaultClaimTTL.
	ClaimTTL time.Duration `json:"claim_ttl,omitempty"`
	// Kind: "rollout" or "rollback".
	Kind string `json:"kind,omitempty"`
}

// Claim says that the host belongs to a fleet rollout until Expires.
type Claim struct {
	Fence   Fence     `json:"fence"`
	Expires time.Time `json:"expires"`
}

// FenceState is what the host remembers of fleet rollouts: the highest
// token it has seen, whose it was, and the claim, if any.
type FenceState struct {
	// Token, RolloutID and Holder: the highest fence seen, and its rollout.
	Token     uint64 `json:"token"`
	RolloutID string `json:"rollout_id,omitempty"`
	Holder    string `json:"holder,omitempty"`
	// Claim: nil when none, or when it expired (as FenceState returns it).
	Claim *Claim `json:"claim,omitempty"`
}

// ClaimRequest records, renews or ends a claim (agentpb.ClaimRequest).
type ClaimRequest struct {
	Fence Fence
	// Release ends the claim when Fence.Token is at least the claim's.
	Release bool
	// ForceRelease ends any claim, without a fence check; it never lowers
	// the token the host has seen.
	ForceRelease bool
}

// FenceState returns the host's fence state; an expired claim is left out.
func (a *Agent) FenceState() (FenceState, error) {
	st, err := a.readFence()
	if err != nil {
		return st, err
	}
	if st.Claim != nil && !a.now().Before(st.Claim.Expires) {
		st.Claim = nil
	}
	return st, nil
}

// CheckFence admits a request of a fleet rollout: one whose token is lower
// than the highest the host has seen wraps ErrFenced, naming both
// rollouts, and changes nothing. Otherwise the token is recorded when it is
// higher, and the host is claimed by f for its claim TTL from now; both are
// on disk when CheckFence returns nil, before the request acts.
func (a *Agent) CheckFence(f Fence) error {
	_, err := a.updateFence(func(st *FenceState, now time.Time) error {
		if err := st.admit(f); err != nil {
			return err
		}
		st.Claim = &Claim{Fence: f, Expires: now.Add(claimTTL(f))}
		return nil
	})
	return err
}

// recheckFence is CheckFence again for a request that CheckFence admitted
// earlier and that may have waited since (for the host lock, an image
// pull): a later rollout's request (its claim, a pull) may have raised the
// token meanwhile. A token the host has seen above f's wraps ErrFenced. It
// only reads the state: the token and the claim stay as they are. The file
// is replaced atomically, so the read needs no fence lock; a write that
// lands just after it is seen at the next check, before the next slot.
func (a *Agent) recheckFence(f Fence) error {
	st, err := a.readFence()
	if err != nil {
		return err
	}
	return st.admit(f) // on a copy: nothing is written
}

// Claim records or renews (or, with Release, ends) the claim of req.Fence's
// rollout, after the fence check of CheckFence; ForceRelease ends any claim
// without one. A request with neither a token nor ForceRelease wraps
// ErrInvalidFence. It returns the state after the request.
func (a *Agent) Claim(req ClaimRequest) (FenceState, error) {
	if req.Fence.Token == 0 && !req.ForceRelease {
		return FenceState{}, fmt.Errorf("%w: a claim needs a fence token (rollout %q); only force_release goes without", ErrInvalidFence, req.Fence.RolloutID)
	}
	st, err := a.updateFence(func(st *FenceState, now time.Time) error {
		if req.ForceRelease {
			if st.Claim != nil {
				a.log.Warn("claim released by force", "rollout_id", st.Claim.Fence.RolloutID, "holder", st.Claim.Fence.Holder, "fence_token", st.Claim.Fence.Token)
			}
			st.Claim = nil
			return nil
		}
		if err := st.admit(req.Fence); err != nil {
			return err
		}
		switch {
		case !req.Release:
			st.Claim = &Claim{Fence: req.Fence, Expires: now.Add(claimTTL(req.Fence))}
		case st.Claim != nil && req.Fence.Token >= st.Claim.Fence.Token:
			st.Claim = nil
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if st.Claim != nil && !a.now().Before(st.Claim.Expires) {
		st.Claim = nil
	}
	return st, nil
}

// checkClaim refuses (ErrClaimed) a request without a fence on a host a
// fleet rollout claims, unless it breaks the claim.
func (a *Agent) checkClaim(req Request) error {
	st, err := a.FenceState()
	if err != nil {
		return err
	}
	c := st.Claim
	if c == nil {
		return nil
	}
	if req.BreakClaim {
		a.log.Warn("redeploy breaks the claim of a fleet rollout", "origin", req.Origin, "rollout_id", c.Fence.RolloutID,
			"holder", c.Fence.Holder, "claim_expires", c.Expires)
		return nil
	}
	since := c.Fence.Since
	if since.IsZero() {
		since = c.Expires.Add(-claimTTL(c.Fence))
	}
	why := ""
	if c.Fence.Message != "" {
		why = fmt.Sprintf(": %q", c.Fence.Message)
	}
	return fmt.Errorf("%w %s held by %s since %s%s; wait for it to end (haroll rollout lock status), or pass --break-claim",
		ErrClaimed, c.Fence.RolloutID, c.Fence.Holder, since.UTC().Format(time.RFC3339), why)
}

// admit is the fence check: a lower token than the highest seen is
// refused; a higher one becomes the highest.
func (st *FenceState) admit(f Fence) error {
	if f.Token < st.Token {
		return fmt.Errorf("%w: rollout %s (token %d) is older than rollout %s (token %d, held by %s) this host has seen: its coordinator lost the fleet lock",
			ErrFenced, f.RolloutID, f.Token, st.RolloutID, st.Token, st.Holder)
	}
	if f.Token > st.Token {
		st.Token, st.RolloutID, st.Holder = f.Token, f.RolloutID, f.Holder
	}
	return nil
}

func claimTTL(f Fence) time.Duration {
	if f.ClaimTTL <= 0 {
		return DefaultClaimTTL
	}
	return f.ClaimTTL
}

// updateFence runs change on the fence state under the fence lock and
// writes the result when change returns nil; an error leaves the file as
// it was.
func (a *Agent) updateFence(change func(st *FenceState, now time.Time) error) (FenceState, error) {
	unlock, err := a.lockFence()
	if err != nil {
		return FenceState{}, err
	}
	defer unlock()
	st, err := a.readFence()
	if err != nil {
		return st, err
	}
	if err := change(&st, a.now()); err != nil {
		return st, err
	}
	if err := atomicfile.WriteJSON(filepath.Join(a.cfg.StateDir, fenceFile), st); err != nil {
		return st, fmt.Errorf("fence state: %w; nothing was done", err)
	}
	return st, nil
}

// lockFence takes the fence lock, waiting for another request's short
// read-modify-write to end.
func (a *Agent) lockFence() (func(), error) {
	if err := os.MkdirAll(a.cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", a.cfg.StateDir, err)
	}
	path := filepath.Join(a.cfg.StateDir, fenceLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("fence lock %s: %w", path, err)
	}
	lk := &unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	for {
		err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLKW, lk)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fence lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// readFence reads the fence state; a missing file is the state of a host
// that has seen no fleet rollout.
func (a *Agent) readFence() (FenceState, error) {
	path := filepath.Join(a.cfg.StateDir, fenceFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return FenceState{}, nil
	}
	if err != nil {
		return FenceState{}, fmt.Errorf("fence state: %w", err)
	}
	var st FenceState
	if err := json.Unmarshal(b, &st); err != nil {
		return FenceState{}, fmt.Errorf("fence state %s is corrupt (%v): remove it (the host then admits any fleet rollout, and belongs to none) after making sure no stale coordinator still runs", path, err)
	}
	return st, nil
}
