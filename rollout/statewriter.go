package rollout

import (
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// StateWrites sums up the fsync'd writes of the state file during a run: the
// log's group commits and the snapshots (the first, and each compaction).
type StateWrites struct {
	Count     int           `json:"count"`
	Total     time.Duration `json:"total_ns"`
	Max       time.Duration `json:"max_ns"`
	Records   int           `json:"records"`   // log records written
	Snapshots int           `json:"snapshots"` // snapshots written, begin included
}

func (s *StateWrites) add(d time.Duration) {
	s.Count++
	s.Total += d
	s.Max = max(s.Max, d)
}

// stateWriter is the one writer of the rollout's state. Its methods are
// safe for concurrent use. A change is applied to the state in memory at
// once, and is durable when the method returns: the callers that arrive
// while a write is under way queue their records, and the first of them
// writes the whole queue with one write and one fsync once that write is
// done (group commit), so a step whose thousands of hosts finish together
// costs a handful of fsyncs. The first failed write is remembered (failed),
// and nothing is written after it: a rollout stops before its next step.
type stateWriter struct {
	path string // "": in memory only
	log  *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	st      *State
	done    doneIndex
	files   *stateFiles
	err     error
	queue   []byte // records not yet written
	queued  int
	group   *commitGroup // the callers waiting for queue
	writing bool
	stats   StateWrites
}

// commitGroup is the callers whose records one write carries.
type commitGroup struct {
	done bool
	err  error
}

// newStateWriter returns the writer of st into path; path "" keeps st in
// memory only. Nothing is written before begin.
func newStateWriter(path string, st *State, log *slog.Logger) *stateWriter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &stateWriter{path: path, log: log, st: st, done: newDoneIndex(st), group: &commitGroup{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// begin writes the whole state, as a new generation (see statelog.go): at
// a new rollout, or at a resume (which also turns a version 1 file into
// version 2). The error wraps ErrState.
func (w *stateWriter) begin() error {
	if w.path == "" {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.writing {
		w.cond.Wait()
	}
	w.st.Updated = time.Now()
	t0 := time.Now()
	f, err := writeGeneration(w.path, w.st, w.generation())
	if err != nil {
		return w.fail(err)
	}
	w.stats.add(time.Since(t0))
	w.stats.Snapshots++
	if w.files != nil {
		_ = w.files.close()
	}
	w.files = f
	return nil
}

// record adds a finished pair to the state; it is durable on return. A
// failed write is logged and remembered (failed).
func (w *stateWriter) record(p PairResult) {
	_ = w.commit(logRecord{At: time.Now(), Pair: &p}, nil)
}

// canary applies update to the canary's progress (created empty if there is
// none yet) and, when update reports a change, records the new progress,
// durable on return. The error wraps ErrState; update's change stays in
// memory either way.
func (w *stateWriter) canary(update func(cs *CanaryState) (changed bool)) error {
	return w.commit(logRecord{}, func(rec *logRecord) bool {
		if w.st.Canary == nil {
			w.st.Canary = &CanaryState{}
		}
		if w.st.Canary.OldImages == nil {
			w.st.Canary.OldImages = map[string]string{}
		}
		if !update(w.st.Canary) {
			return false
		}
		cs := *w.st.Canary
		cs.OldImages = maps.Clone(cs.OldImages)
		rec.At, rec.Canary = time.Now(), &cs
		return true
	})
}

// complete records that the rollout ended on its own with outcome
// (HostDone or HostFailed), and stopped says why batches were left unrun.
// The error wraps ErrState.
func (w *stateWriter) complete(outcome, stopped string) error {
	return w.commit(logRecord{At: time.Now(), Complete: &completion{Outcome: outcome, Stopped: stopped}}, nil)
}

// failed returns the first failed write (wrapping ErrState), or nil.
func (w *stateWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// writes sums up the fsync'd writes so far.
func (w *stateWriter) writes() StateWrites {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// state returns the state in memory; the caller must not change it.
func (w *stateWriter) state() *State { return w.st }

// commit applies rec to the state (after fill, under the lock, if set and
// reporting a change) and waits until it is durable.
func (w *stateWriter) commit(rec logRecord, fill func(*logRecord) bool) error {
	var line []byte
	var err error
	if fill == nil && w.path != "" {
		if line, err = encodeRecord(rec); err != nil { // outside the lock: the costly part
			return w.failLocked(err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if fill != nil {
		if !fill(&rec) {
			return w.err
		}
		if w.path != "" {
			if line, err = encodeRecord(rec); err != nil {
				return w.fail(err)
			}
		}
	}
	w.done.apply(w.st, rec)
	if w.path == "" {
		return nil
	}
	if w.err != nil || w.files == nil {
		if w.err == nil {
			return w.fail(fmt.Errorf("state file %s: a record before the state was written (begin)", w.path))
		}
		return w.err
	}
	w.queue = append(w.queue, line...)
	w.queued++
	g := w.group
	for !g.done {
		if w.writing {
			w.cond.Wait()
			continue
		}
		w.flush()
	}
	return g.err
}

// flush writes the queue with one write and one fsync, then compacts if
// due. It is called with the lock held and releases it while writing.
func (w *stateWriter) flush() {
	w.writing = true
	lines, n, g := w.queue, w.queued, w.group
	w.queue, w.queued, w.group = nil, 0, &commitGroup{}
	files := w.files
	w.mu.Unlock()
	t0 := time.Now()
	err := files.append(lines, n)
	d := time.Since(t0)
	w.mu.Lock()
	w.stats.add(d)
	w.stats.Records += n
	if err != nil {
		err = w.fail(err)
	}
	g.done, g.err = true, err
	w.cond.Broadcast()
	if err == nil && files.due() {
		w.compact()
	}
	w.writing = false
	w.cond.Broadcast()
}

// compact writes the state whole as a new generation; called by flush. The
// records queued meanwhile are already in the state in memory, so the
// snapshot may hold them too: loading counts them once.
func (w *stateWriter) compact() {
	snap := *w.st
	snap.Done = append([]PairResult(nil), w.st.Done...)
	if w.st.Canary != nil {
		cs := *w.st.Canary
		cs.OldImages = maps.Clone(cs.OldImages)
		snap.Canary = &cs
	}
	old := w.files
	w.mu.Unlock()
	t0 := time.Now()
	f, err := writeGeneration(w.path, &snap, old.generation)
	d := time.Since(t0)
	w.mu.Lock()
	if err != nil {
		_ = w.fail(fmt.Errorf("compacting: %w", err))
		return
	}
	w.stats.add(d)
	w.stats.Snapshots++
	w.st.Version, w.st.Generation = snap.Version, snap.Generation
	_ = old.close()
	w.files = f
	w.log.Debug("state file compacted", "state_file", w.path, "pairs", len(snap.Done), "generation", f.generation, "took", d)
}

func (w *stateWriter) generation() uint64 {
	if w.files != nil {
		return w.files.generation
	}
	return w.st.Generation
}

// fail remembers err as the first failed write, logs it, and returns it
// wrapped in ErrState. The lock is held.
func (w *stateWriter) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrState, err)
	if w.err == nil {
		w.err = err
		w.log.Error("state file not written: the rollout stops after this step", "state_file", w.path, "error", err)
	}
	return err
}

// failLocked is fail for a caller that does not hold the lock.
func (w *stateWriter) failLocked(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fail(err)
}
