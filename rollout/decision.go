package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// decisionPoll is how often a canary under analysis or paused looks for a
// person's decision.
const decisionPoll = 250 * time.Millisecond

// Decision is what a person said of a canary: `haroll rollout promote` or
// `haroll rollout abort`, from another shell. It is written next to the
// state file (DecisionFile), where the running coordinator, or a later
// --resume, finds it.
type Decision struct {
	Decision string    `json:"decision"` // DecisionPromote or DecisionAbort
	By       string    `json:"by,omitempty"`
	At       time.Time `json:"at"`
}

// DecisionFile is where the decision for the rollout recorded in stateFile
// is written.
func DecisionFile(stateFile string) string { return stateFile + ".decision" }

// ErrNoCanaryWaiting: promote or abort was asked of a rollout that has no
// canary waiting for it.
var ErrNoCanaryWaiting = errors.New("no canary is waiting for a decision")

// Decide records a person's decision for the rollout in stateFile. It
// refuses (ErrNoCanaryWaiting) unless that rollout is unfinished and its
// canary is paused (promote) or under analysis or paused (abort), and
// returns the state it read.
func Decide(stateFile, decision, by string) (*State, error) {
	if decision != DecisionPromote && decision != DecisionAbort {
		return nil, fmt.Errorf("decision %q: want %s or %s", decision, DecisionPromote, DecisionAbort)
	}
	st, err := ReadState(stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no state file %s: pass the coordinator's --state-file", ErrNoCanaryWaiting, stateFile)
	}
	if err != nil {
		return nil, err
	}
	phase := ""
	if st.Canary != nil {
		phase = st.Canary.Phase
	}
	switch {
	case st.Complete:
		return st, fmt.Errorf("%w: the rollout of %s in %s is complete (%s)", ErrNoCanaryWaiting, st.Image, stateFile, st.Outcome)
	case phase == CanaryPaused:
	case phase == CanaryAnalysis && decision == DecisionAbort:
	case phase == CanaryAnalysis:
		return st, fmt.Errorf("%w: the canary of %s is still under analysis; promote once it is paused (or abort now)", ErrNoCanaryWaiting, st.Image)
	case phase == "":
		return st, fmt.Errorf("%w: the rollout of %s in %s has no canary stage under way", ErrNoCanaryWaiting, st.Image, stateFile)
	case phase == CanaryPromoting || phase == CanaryPromoted:
		return st, fmt.Errorf("%w: the canary of %s passed and is %s: too late to abort it; roll back with a rollout of the old image", ErrNoCanaryWaiting, st.Image, phase)
	default:
		return st, fmt.Errorf("%w: the canary of %s is %s", ErrNoCanaryWaiting, st.Image, phase)
	}
	if err := atomicfile.WriteJSON(DecisionFile(stateFile), Decision{Decision: decision, By: by, At: time.Now()}); err != nil {
		return st, fmt.Errorf("decision file: %w", err)
	}
	return st, nil
}

// takeDecision reads a decision written for this rollout and, when it is
// one of accept, removes and returns it; "" when there is none (or one for
// later: a promote written during the analysis waits for the pause).
func (r *run) takeDecision(accept ...string) (string, error) {
	if r.e.StateFile == "" {
		return "", nil
	}
	path := DecisionFile(r.e.StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var d Decision
	if err := json.Unmarshal(b, &d); err != nil {
		return "", fmt.Errorf("decision file %s is unreadable (%v): remove it and run `haroll rollout promote` or `abort` again", path, err)
	}
	if !slices.Contains(accept, d.Decision) {
		return "", nil
	}
	if err := os.Remove(path); err != nil {
		return "", err
	}
	r.log.Warn("canary decision", "decision", d.Decision, "by", d.By)
	return d.Decision, nil
}

// awaitDecision waits for a person to promote or abort the paused canary.
func (r *run) awaitDecision(ctx context.Context) (string, error) {
	t := time.NewTicker(decisionPoll)
	defer t.Stop()
	for {
		d, err := r.takeDecision(DecisionPromote, DecisionAbort)
		if err != nil {
			r.log.Warn("reading the canary decision", "error", err)
		}
		if d != "" {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return "", context.Cause(ctx)
		case <-t.C:
		}
	}
}
