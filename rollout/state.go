package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// State is a rollout's progress as the coordinator persists it (see
// statelog.go for the files) after every finished (host, slot) pair, so
// that `haroll rollout --resume` can go on
// where a coordinator that died left off. A pair is recorded once the agent
// reported on it, or the coordinator gave up on it (step timeout, lost
// agent); a pair whose call was cut short by the coordinator stopping is
// not, and a resume asks it again (the agent skips a slot already on the
// image).
type State struct {
	Version     int    `json:"version"`
	Image       string `json:"image"`
	Force       bool   `json:"force,omitempty"`
	MaxFailures string `json:"max_failures"`
	// Hosts is the inventory, in order; Skipped those left out of the plan
	// (unreachable with --skip-unreachable), with why.
	Hosts   []string          `json:"hosts"`
	Skipped map[string]string `json:"skipped,omitempty"`
	Slots   []string          `json:"slots"`
	Plan    Plan              `json:"plan"`
	// Done are the finished pairs, in the order they finished.
	Done    []PairResult `json:"done"`
	Started time.Time    `json:"started"`
	Updated time.Time    `json:"updated"`
	// Complete is set when the rollout ended on its own (every batch run,
	// or stopped by max_failures); a cancelled or killed one stays
	// incomplete and resumable.
	Complete bool   `json:"complete"`
	Outcome  string `json:"outcome,omitempty"` // HostDone or HostFailed, once complete
	Stopped  string `json:"stopped,omitempty"`
	// Canary is the canary batch's progress, once it began; CanaryPolicy
	// how it is judged (also after a resume).
	Canary       *CanaryState  `json:"canary,omitempty"`
	CanaryPolicy *CanaryPolicy `json:"canary_policy,omitempty"`
	// PID is the coordinator process that writes the file.
	PID int `json:"pid,omitempty"`
	// Generation pairs the snapshot with its log (version 2).
	Generation uint64 `json:"generation,omitempty"`
	// The fleet lock the rollout was started under (a resume takes a new
	// one), and what kind of rollout it is (KindRollout or KindRollback).
	RolloutID string `json:"rollout_id,omitempty"`
	Token     uint64 `json:"token,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Message   string `json:"message,omitempty"`
	// Images, for a rollback, is the image each (host, slot) pair goes back
	// to, keyed "host/slot"; Image is then empty.
	Images map[string]string `json:"images,omitempty"`
	// OnFailure is what the rollout does when its failures pass
	// max_failures (OnFailureStop, OnFailureRollback, OnFailurePause).
	OnFailure string `json:"on_failure,omitempty"`
	// Paused says why the rollout waits for `haroll rollout promote` (go
	// on) or `abort` (stop) after its failures passed max_failures
	// (on_failure: pause); empty when it does not.
	Paused string `json:"paused,omitempty"`
	// RollingBack says why on_failure: rollback began putting the pairs
	// this rollout replaced back: a resume goes on with that, and runs no
	// further batch.
	RollingBack string `json:"rolling_back,omitempty"`
	// Prepulled is set once every host had the image (prepull): a resume
	// does not pull again.
	Prepulled bool `json:"prepulled,omitempty"`
}

// PairResult is one finished (host, slot) pair.
type PairResult struct {
	Batch    int           `json:"batch"` // 1-based
	Host     string        `json:"host"`
	Slot     string        `json:"slot"`
	Result   string        `json:"result"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	Finished time.Time     `json:"finished"`
	// OldImage is what the slot ran before (a replaced pair's, as its agent
	// said): what on_failure rollback puts back.
	OldImage string `json:"old_image,omitempty"`
}

// Pairs is the number of (host, slot) pairs in the plan.
func (s *State) Pairs() int {
	n := 0
	for _, b := range s.Plan.Batches {
		for _, st := range b.Steps {
			n += len(st.Hosts)
		}
	}
	return n
}

// ReadState reads the state at path: the snapshot and the log beside it
// (see statelog.go), or a version 1 file. A missing file is an error
// wrapping fs.ErrNotExist; a log damaged before its last line is an error
// that says so. It may run while a coordinator writes the state.
func ReadState(path string) (*State, error) {
	return loadState(path)
}

// LoadResumable reads the state file at path for `--resume`. It wraps
// ErrNothingToResume when there is no file or the rollout it records is
// complete, and ErrImageMismatch when image is not empty and differs from
// the recorded one. LoadResumableFrom reads any Store.
func LoadResumable(path, image string) (*State, error) {
	return LoadResumableFrom(context.Background(), NewFileStore(path), image)
}

// WriteState writes s whole to path as a snapshot of a new generation with
// no log after it (see statelog.go): a crash leaves either the old state or
// the new one. The directory is created if needed.
func WriteState(path string, s *State) error {
	snap := *s
	snap.Version = stateVersion
	snap.Generation = max(s.Generation, peekLogGeneration(StateLog(path))) + 1
	b, err := json.Marshal(&snap)
	if err == nil {
		err = atomicfile.Write(path, b)
	}
	if err == nil { // stale now: its generation is older
		if err = os.Remove(StateLog(path)); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	return nil
}
