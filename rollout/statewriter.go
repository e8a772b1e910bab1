package rollout

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// StateWrites sums up the durable writes of the state during a run (the
// state file's fsyncs, or etcd's transactions): the log's group commits and
// the snapshots (the first, and each compaction).
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

// stateWriter is the one writer of a rollout's state: every change to what
// the store records goes through it, under its lock, and is durable when the
// call returns. Its methods are safe for concurrent use. Where it writes is
// its backend: the state file and its log (fileBackend), or etcd
// (etcdBackend); group commit, compaction and "nothing written after a
// failed write" are the writer's, whatever the backend.
//
// A change is applied to the state in memory at once and appended to the
// log as one record (see statelog.go). Callers that arrive while a write is
// under way queue their records, and the first of them writes the whole
// queue with one write and one fsync once that write is done (group
// commit), so a step whose thousands of hosts finish together costs a
// handful of fsyncs. When the log holds as many records as the snapshot
// has pairs, the writer compacts: a new snapshot, a new log.
//
// A write that fails is logged and remembered (failed), and nothing is
// written after it: the rollout stops before its next step. With no
// backend the state is kept in memory only (a rollout without a state file still
// tracks its canary).
type stateWriter struct {
	backend stateBackend // nil: in memory only
	log     *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	st      *State // nil until begin or resume
	done    doneIndex
	canary  *CanaryState
	files   stateLog // nil until the first generation is written
	err     error    // the first failed write
	queue   []byte   // records not yet written
	queued  int
	group   *commitGroup // the callers waiting for queue
	writing bool
	closed  bool
	stats   StateWrites
}

// commitGroup is the callers whose records one write carries.
type commitGroup struct {
	done bool
	err  error
}

// newStateWriter is a writer of the state file at path ("": in memory only).
func newStateWriter(path string, log *slog.Logger) *stateWriter {
	if path == "" {
		return newStateWriterTo(nil, log)
	}
	return newStateWriterTo(fileBackend{path: path}, log)
}

// newStateWriterTo is a writer to backend (nil: in memory only).
func newStateWriterTo(backend stateBackend, log *slog.Logger) *stateWriter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &stateWriter{backend: backend, log: log, group: &commitGroup{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// begin takes st as the state of a new rollout and writes it whole, as a
// new generation. The error says what could not be written.
func (w *stateWriter) begin(st *State) error {
	w.resume(st)
	if w.backend == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.writing {
		w.cond.Wait()
	}
	w.writing = true
	defer w.cond.Broadcast()
	err := w.generationLocked()
	w.writing = false
	return err
}

// resume takes st, read from the store (a state file of version 1 or 2),
// as the rollout's state; it is written whole, as version 2, with the next
// change.
func (w *stateWriter) resume(st *State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st, w.done = st, newDoneIndex(st)
	if st.Canary != nil {
		w.canary = st.Canary
	}
}

// record adds a finished pair, durable on return. A failed write is logged
// and remembered (failed): the rollout stops after this step.
func (w *stateWriter) record(p PairResult) {
	_ = w.commit(logRecord{At: time.Now(), Pair: &p}, nil)
}

// complete marks the rollout as ended on its own, with outcome (HostDone
// or HostFailed) and why it stopped early, if it did. The error wraps
// ErrState.
func (w *stateWriter) complete(outcome, stopped string) error {
	return w.commit(logRecord{At: time.Now(), Complete: &completion{Outcome: outcome, Stopped: stopped}}, nil)
}

// pause records that the rollout waits for a decision, why (empty: no
// longer), durable on return. The error wraps ErrState.
func (w *stateWriter) pause(why string) error {
	return w.commit(logRecord{At: time.Now(), Paused: &pausing{Why: why}}, nil)
}

// rollingBack records that on_failure: rollback puts the earlier batches
// back, why; durable on return. The error wraps ErrState.
func (w *stateWriter) rollingBack(why string) error {
	return w.commit(logRecord{At: time.Now(), RollingBack: &pausing{Why: why}}, nil)
}

// canaryState returns the canary's recorded progress, or a new one; its
// phase, verdict and traffic are changed by the canary's judge alone,
// between steps, and written with saveCanary; its old images only through
// noteOldImage.
func (w *stateWriter) canaryState() *CanaryState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.canaryLocked()
}

func (w *stateWriter) canaryLocked() *CanaryState {
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

// saveCanary records the canary's progress, durable on return; a failed
// write is remembered (failed).
func (w *stateWriter) saveCanary() {
	_ = w.commit(logRecord{}, func(*CanaryState) bool { return true })
}

// noteOldImage remembers what a canary slot ran before it is replaced, and
// records it at once when it is news: a rollback must know it whatever
// becomes of the call. An image that is empty (unknown) or newImage
// (nothing to put back) is not noted. The error wraps ErrState.
func (w *stateWriter) noteOldImage(host, slot, image, newImage string) error {
	if image == "" || image == newImage {
		return nil
	}
	return w.commit(logRecord{}, func(cs *CanaryState) bool {
		key := canaryKey(host, slot)
		if cs.OldImages[key] == image {
			return false
		}
		cs.OldImages[key] = image
		return true
	})
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
	var phase, verdict string
	var cs *CanaryState
	err := w.commit(logRecord{}, func(c *CanaryState) bool {
		cs, phase, verdict = c, c.Phase, c.Verdict
		c.Phase, c.Verdict = CanaryPromoting, why
		return true
	})
	if err != nil {
		w.mu.Lock()
		cs.Phase, cs.Verdict = phase, verdict
		w.mu.Unlock()
	}
	return err
}

// failed is the first write that failed, wrapping ErrState; nil if none.
func (w *stateWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// close closes the log once every write is done; a change after it is an
// error.
func (w *stateWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.writing {
		w.cond.Wait()
	}
	if w.files != nil {
		_ = w.files.close()
	}
	w.files, w.closed = nil, true
}

// writes sums up the fsync'd writes so far.
func (w *stateWriter) writes() StateWrites {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// commit applies rec to the state and waits until it is durable. With
// change set, rec is the canary's progress after change, if change reports
// one (under the lock, so that of two concurrent changes the later record
// holds both).
func (w *stateWriter) commit(rec logRecord, change func(*CanaryState) bool) error {
	var line []byte
	var err error
	persist := w.backend != nil
	if change == nil && persist {
		if line, err = encodeRecord(rec); err != nil { // outside the lock: the costly part
			return w.failUnlocked(err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if change != nil {
		cs := w.canaryLocked()
		if !change(cs) {
			return nil
		}
		cp := *cs
		cp.OldImages = maps.Clone(cs.OldImages)
		rec.At, rec.Canary = time.Now(), &cp
		if persist && w.st != nil {
			if line, err = encodeRecord(rec); err != nil {
				return w.fail(err)
			}
		}
	}
	if w.st == nil {
		return nil // no state: a rollout without a state file
	}
	w.done.apply(w.st, rec)
	if rec.Canary != nil {
		w.st.Canary = w.canary // the record's copy is for the log
	}
	if !persist {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fmt.Errorf("%w: %s: a change after the run ended", ErrState, w.backend)
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
	var err error
	switch {
	case w.err != nil:
		// Nothing is written after a failed write: the log may end torn
		// (a record after it would make it unreadable), or a compaction
		// that failed late left the files behind the snapshot. The queued
		// records were applied in memory only, and are not acknowledged.
		err = w.err
	case files == nil: // a resume's first change: the whole state, queue included
		err = w.generationLocked()
	default:
		w.mu.Unlock()
		t0 := time.Now()
		err = files.append(lines, n)
		d := time.Since(t0)
		w.mu.Lock()
		w.stats.add(d)
		w.stats.Records += n
		if err != nil {
			err = w.fail(err)
		}
	}
	g.done, g.err = true, err
	w.cond.Broadcast()
	if err == nil && w.files.due() {
		w.compact()
	}
	w.writing = false
	w.cond.Broadcast()
}

// compact writes the state whole as a new generation; called by flush. The
// records queued meanwhile are already in the state in memory, so the
// snapshot may hold them too: loading counts them once.
func (w *stateWriter) compact() {
	if err := w.generationLocked(); err != nil {
		return
	}
	w.log.Debug("state compacted", "store", w.backend.String(), "pairs", len(w.st.Done), "generation", w.files.generation())
}

// generationLocked writes the state whole as a new generation and appends
// to its log from then on. It releases the lock while writing: a copy of
// the state is written, with the pairs it held when the write began. The
// error wraps ErrState.
func (w *stateWriter) generationLocked() error {
	snap := *w.st
	snap.Done = slices.Clone(w.st.Done)
	if w.st.Canary != nil {
		cs := *w.st.Canary
		cs.OldImages = maps.Clone(cs.OldImages)
		snap.Canary = &cs
	}
	snap.Updated = time.Now()
	old := w.files
	prev := w.st.Generation
	if old != nil {
		prev = old.generation()
	}
	w.mu.Unlock()
	t0 := time.Now()
	f, err := w.backend.generation(&snap, prev)
	d := time.Since(t0)
	w.mu.Lock()
	if err != nil {
		return w.fail(err)
	}
	w.stats.add(d)
	w.stats.Snapshots++
	w.st.Version, w.st.Generation = snap.Version, snap.Generation
	if old != nil {
		_ = old.close()
	}
	w.files = f
	return nil
}

// fail remembers err as the first failed write, logs it, and returns it
// wrapped in ErrState. The lock is held.
func (w *stateWriter) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrState, err)
	if w.err == nil {
		w.err = err
		w.log.Error("state not written: the rollout stops after this step", "store", w.backend.String(), "error", err)
	}
	return err
}

// failUnlocked is fail for a caller that does not hold the lock.
func (w *stateWriter) failUnlocked(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fail(err)
}
