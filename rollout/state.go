package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
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
// the recorded one.
func LoadResumable(path, image string) (*State, error) {
	s, err := ReadState(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no state file %s: no rollout was started with this state_file (see --state-file)", ErrNothingToResume, path)
	}
	if err != nil {
		return nil, err
	}
	if s.Complete {
		return nil, fmt.Errorf("%w: the rollout of %s recorded in %s is complete (%s, %s): start a new rollout with --image",
			ErrNothingToResume, s.Image, path, s.Outcome, s.Updated.Format(time.RFC3339))
	}
	if image != "" && image != s.Image {
		return nil, fmt.Errorf("%w: --image %s, but the unfinished rollout recorded in %s is of %s: resume without --image, or remove the file to start over",
			ErrImageMismatch, image, path, s.Image)
	}
	return s, nil
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

// stateWriter is the one writer of a rollout's state: every change to what
// the state file records goes through it, under its lock, and is written
// before the call returns. A write that fails is logged and remembered
// (failed): the rollout stops before its next step. With no path it keeps
// the state in memory only (a rollout without a state file still tracks
// its canary).
type stateWriter struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	st     *State // nil until begin
	canary *CanaryState
	err    error // the first failed write
}

func newStateWriter(path string, log *slog.Logger) *stateWriter {
	return &stateWriter{path: path, log: log}
}

// begin takes st as the state of a new rollout and writes it whole.
func (w *stateWriter) begin(st *State) error {
	w.resume(st)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked()
}

// resume takes st, read from the state file, as the rollout's state; it is
// written with the next change.
func (w *stateWriter) resume(st *State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st = st
	if st.Canary != nil {
		w.canary = st.Canary
	}
}

// record adds a finished pair and writes it.
func (w *stateWriter) record(p PairResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st == nil {
		return
	}
	w.st.Done = append(w.st.Done, p)
	w.rememberLocked(w.writeLocked(), "the rollout stops after this step")
}

// complete marks the rollout as ended on its own, with outcome (HostDone
// or HostFailed) and why it stopped early, if it did.
func (w *stateWriter) complete(outcome, stopped string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st == nil {
		return nil
	}
	w.st.Complete, w.st.Stopped, w.st.Outcome = true, stopped, outcome
	return w.writeLocked()
}

// canaryState returns the canary's recorded progress, or a new one; its
// phase and verdict are changed by the canary's judge alone, between steps,
// and written with saveCanary.
func (w *stateWriter) canaryState() *CanaryState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.canary == nil {
		w.canary = &CanaryState{}
	}
	if w.canary.OldImages == nil {
		w.canary.OldImages = map[string]string{}
	}
	if w.st != nil { // recorded with the state from now on
		w.st.Canary = w.canary
	}
	return w.canary
}

// saveCanary writes the canary's progress.
func (w *stateWriter) saveCanary() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rememberLocked(w.writeLocked(), "")
}

// noteOldImage remembers what a canary slot ran before it is replaced, and
// writes it at once when it is news: a rollback must know it whatever
// becomes of the call. An image that is empty (unknown) or newImage
// (nothing to put back) is not noted.
func (w *stateWriter) noteOldImage(host, slot, image, newImage string) error {
	if image == "" || image == newImage {
		return nil
	}
	cs := w.canaryState()
	w.mu.Lock()
	defer w.mu.Unlock()
	key := canaryKey(host, slot)
	if cs.OldImages[key] == image {
		return nil
	}
	cs.OldImages[key] = image
	return w.rememberLocked(w.writeLocked(), "")
}

// oldImage is what the canary slot ran before the rollout, if noted.
func (w *stateWriter) oldImage(host, slot string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.canary == nil {
		return "", false
	}
	old, ok := w.canary.OldImages[canaryKey(host, slot)]
	return old, ok
}

// promoting records the canary as being promoted, with verdict why. When
// that cannot be written, the canary is left as it was (what the file
// holds) and the error wraps ErrState.
func (w *stateWriter) promoting(why string) error {
	cs := w.canaryState()
	w.mu.Lock()
	defer w.mu.Unlock()
	phase, verdict := cs.Phase, cs.Verdict
	cs.Phase, cs.Verdict = CanaryPromoting, why
	if err := w.rememberLocked(w.writeLocked(), ""); err != nil {
		cs.Phase, cs.Verdict = phase, verdict
		return err
	}
	return nil
}

// failed is the first write that failed, wrapping ErrState; nil if none.
func (w *stateWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// writeLocked writes the whole state; nothing without a path or a state.
func (w *stateWriter) writeLocked() error {
	if w.path == "" || w.st == nil {
		return nil
	}
	w.st.Updated = time.Now()
	return WriteState(w.path, w.st)
}

// rememberLocked keeps the first failed write and returns err wrapped in
// ErrState (nil stays nil).
func (w *stateWriter) rememberLocked(err error, consequence string) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%w: %w", ErrState, err)
	if w.err == nil {
		msg := "state file not written"
		if consequence != "" {
			msg += ": " + consequence
		}
		w.log.Error(msg, "error", err)
		w.err = err
	}
	return err
}
