package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// decisionPoll is how often a canary under analysis or paused looks for a
// person's decision.
const decisionPoll = 250 * time.Millisecond

// Decision is what a person said of a canary: `haroll rollout promote` or
// `haroll rollout abort`, from another shell. It is written in the store:
// next to the state file (DecisionFile), or in etcd, where the running
// coordinator, or a later --resume, finds it.
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

// decisionLockWait bounds how long Decide and the coordinator wait for the
// other's hold of the decision lock, which lasts one read and one write of
// a small file.
const decisionLockWait = 10 * time.Second

// lockDecisions takes the decision lock of the rollout in stateFile, an
// flock on a file beside it, and returns its release. Decide holds it while
// it checks the state and writes the decision; the coordinator while it
// takes a decision and records the promotion. Each is thus one step: an
// abort that Decide accepted is taken by the coordinator before it records
// the promotion, and an abort that comes later finds the promotion recorded
// and is refused. It is never accepted and then ignored. (The etcd store's
// decision lock is an etcd mutex, with the same contract.)
func lockDecisions(stateFile string) (release func(), err error) {
	path := DecisionFile(stateFile) + ".lock"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("decision lock: %w", err)
	}
	deadline := time.Now().Add(decisionLockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing drops the flock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("decision lock %s: %w (held for more than %s: look for a stuck `haroll rollout` process on this host)", path, err, decisionLockWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fileDecisions are the decisions of the rollout in stateFile: the file
// DecisionFile, under lockDecisions.
type fileDecisions struct{ stateFile string }

func (d fileDecisions) lock(context.Context) (func(), error) { return lockDecisions(d.stateFile) }

func (d fileDecisions) peek(context.Context) (Decision, error) {
	path := DecisionFile(d.stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Decision{}, nil
	}
	if err != nil {
		return Decision{}, err
	}
	var dec Decision
	if err := json.Unmarshal(b, &dec); err != nil {
		return Decision{}, fmt.Errorf("decision file %s is unreadable (%v): remove it and run `haroll rollout promote` or `abort` again", path, err)
	}
	return dec, nil
}

func (d fileDecisions) write(_ context.Context, dec Decision) error {
	if err := atomicfile.WriteJSON(DecisionFile(d.stateFile), dec); err != nil {
		return fmt.Errorf("decision file: %w", err)
	}
	return nil
}

func (d fileDecisions) drop(context.Context) error {
	if err := os.Remove(DecisionFile(d.stateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (d fileDecisions) String() string { return "decision file " + DecisionFile(d.stateFile) }

// Decide records a person's decision for the rollout in stateFile: DecideIn
// with the file store of stateFile.
func Decide(stateFile, decision, by string) (*State, error) {
	return DecideIn(context.Background(), NewFileStore(stateFile), decision, by)
}

// DecideIn records a person's decision for the rollout in s. It refuses
// (ErrNoCanaryWaiting) unless that rollout is unfinished and its canary is
// paused (promote) or under analysis or paused (abort), and returns the
// state it read. The check and the write are one step under the decision
// lock (see lockDecisions): a decision DecideIn records is carried out by
// the coordinator (or a later --resume), and once the coordinator recorded
// the promotion an abort is refused as too late.
func DecideIn(ctx context.Context, s Store, decision, by string) (*State, error) {
	if decision != DecisionPromote && decision != DecisionAbort {
		return nil, fmt.Errorf("decision %q: want %s or %s", decision, DecisionPromote, DecisionAbort)
	}
	ds := s.decisions(nil)
	release, lockErr := ds.lock(ctx)
	if lockErr == nil {
		defer release()
	}
	st, err := s.ReadState(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no rollout state in %s: pass the coordinator's --state-file, or its --config", ErrNoCanaryWaiting, s)
	}
	if err != nil {
		return nil, err
	}
	if lockErr != nil {
		return st, lockErr
	}
	phase := ""
	if st.Canary != nil {
		phase = st.Canary.Phase
	}
	switch {
	case st.Complete:
		return st, fmt.Errorf("%w: the rollout of %s in %s is complete (%s)", ErrNoCanaryWaiting, st.Image, s, st.Outcome)
	case st.Paused != "": // on_failure: pause; promote goes on, abort stops
	case phase == CanaryPaused:
	case phase == CanaryAnalysis && decision == DecisionAbort:
	case phase == CanaryAnalysis:
		return st, fmt.Errorf("%w: the canary of %s is still under analysis; promote once it is paused (or abort now)", ErrNoCanaryWaiting, st.Image)
	case phase == "":
		return st, fmt.Errorf("%w: the rollout of %s in %s has no canary stage under way", ErrNoCanaryWaiting, st.Image, s)
	case phase == CanaryPromoting || phase == CanaryPromoted:
		state := "is already being promoted"
		if phase == CanaryPromoted {
			state = "was promoted"
		}
		if decision == DecisionPromote {
			return st, fmt.Errorf("%w: the canary of %s passed and %s: nothing to promote", ErrNoCanaryWaiting, st.Image, state)
		}
		return st, fmt.Errorf("%w: the canary of %s passed and %s: too late to abort it; the promotion goes on (also after a --resume): roll back afterwards with a rollout of the old image", ErrNoCanaryWaiting, st.Image, state)
	default:
		return st, fmt.Errorf("%w: the canary of %s is %s", ErrNoCanaryWaiting, st.Image, phase)
	}
	if err := ds.write(ctx, Decision{Decision: decision, By: by, At: time.Now()}); err != nil {
		return st, err
	}
	return st, nil
}

// takeDecision reads a decision written for this rollout and, when it is
// one of accept, removes and returns it; "" when there is none (or one for
// later: a promote written during the analysis waits for the pause). It
// takes no lock: an abort taken during the analysis is carried out whenever
// it is taken; what must be one step with Decide goes through decide.
func (r *run) takeDecision(accept ...string) (string, error) {
	d, err := r.peekDecision(accept...)
	if d.Decision == "" || err != nil {
		return "", err
	}
	return d.Decision, r.dropDecision(d)
}

// peekDecision is takeDecision without the removal; a zero Decision when
// there is none.
func (r *run) peekDecision(accept ...string) (Decision, error) {
	if r.decisions == nil {
		return Decision{}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	d, err := r.decisions.peek(ctx)
	if err != nil || !slices.Contains(accept, d.Decision) {
		return Decision{}, err
	}
	return d, nil
}

// dropDecision removes the decision once decision d is taken.
func (r *run) dropDecision(d Decision) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := r.decisions.drop(ctx); err != nil {
		return err
	}
	r.log.Warn("canary decision", "decision", d.Decision, "by", d.By)
	return nil
}

// lockDecisions takes the rollout's decision lock (see lockDecisions of
// the file store) and returns its release; without a store, there is
// nothing to lock.
func (r *run) lockDecisions() (release func(), err error) {
	if r.decisions == nil {
		return func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return r.decisions.lock(ctx)
}

// testHookDecided, when set by a test, runs once the promotion is decided
// and before it is recorded, under the decision lock.
var testHookDecided func()

// decide takes a decision written for this rollout, one of accept, and
// unless it is an abort (or there is none and promoteOnNone is false)
// records cs as promoting with verdict why, all under the decision lock
// (see lockDecisions). It returns DecisionAbort, DecisionPromote (the
// promotion is recorded) or "" (none yet, nothing recorded). An error
// wrapping ErrState means the promotion could not be recorded, and
// nothing is to be promoted.
func (r *run) decide(cs *CanaryState, why string, promoteOnNone bool, accept ...string) (string, error) {
	release, err := r.lockDecisions()
	if err != nil {
		return "", err
	}
	defer release()
	d, err := r.peekDecision(accept...)
	if err != nil {
		return "", err
	}
	if d.Decision == DecisionAbort {
		return d.Decision, r.dropDecision(d)
	}
	if d.Decision == "" && !promoteOnNone {
		return "", nil
	}
	if testHookDecided != nil {
		testHookDecided()
	}
	if err := r.w.promoting(why); err != nil {
		return "", err // a person's promote stays for a --resume
	}
	if d.Decision != "" {
		if err := r.dropDecision(d); err != nil {
			r.log.Warn("removing the canary decision taken", "error", err)
		}
	}
	if d.Decision == "" {
		return DecisionPromote, nil
	}
	return d.Decision, nil
}

// awaitDecision waits for a person to promote or abort the paused canary;
// a promote comes back with the promotion recorded (see decide).
func (r *run) awaitDecision(ctx context.Context, cs *CanaryState, why string) (string, error) {
	t := time.NewTicker(decisionPoll)
	defer t.Stop()
	for {
		d, err := r.decide(cs, why, false, DecisionPromote, DecisionAbort)
		if errors.Is(err, ErrState) {
			return "", err
		}
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
