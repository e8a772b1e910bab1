package rollout

import (
	"errors"
	"os"
	"sync"
	"testing"
	"time"
)

func waitFor(t *testing.T, w *stateWriter, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("timed out")
}

// A group commit whose write failed part-way (ENOSPC, EIO) leaves a torn line;
// the records queued behind it must not be appended after it.
func TestRecordsQueuedBehindAFailedAppendAreNeitherWrittenNorAcknowledged(t *testing.T) {
	path := statePath(t)
	w := begun(t, path, 4)
	w.record(pairOf(0))
	release := make(chan struct{})
	var calls int
	testHookAppend = func() error {
		calls++
		if calls == 1 {
			<-release
			f, err := os.OpenFile(StateLog(path), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteString(`deadbeef {"pair":{"host":"h`) // the part the disk took
			_ = f.Close()
			return errors.New("no space left on device")
		}
		return nil
	}
	t.Cleanup(func() { testHookAppend = nil })
	var wg sync.WaitGroup
	wg.Go(func() { w.record(pairOf(1)) })
	waitFor(t, w, func() bool { return w.writing })
	var err2, err3 error
	wg.Go(func() { err2 = w.commit(logRecordOf(pairOf(2)), nil) })
	waitFor(t, w, func() bool { return w.queued == 1 })
	wg.Go(func() { err3 = w.commit(logRecordOf(pairOf(3)), nil) })
	waitFor(t, w, func() bool { return w.queued == 2 })
	close(release)
	wg.Wait()
	t.Logf("second group: err=%v %v, appends=%d", err2, err3, calls)
	if _, err := ReadState(path); err != nil {
		t.Errorf("after one failed append the state cannot be read any more: %v", err)
	}
}

func logRecordOf(p PairResult) logRecord { return logRecord{At: time.Now(), Pair: &p} }

// A compaction that fails after its snapshot is in place: the records queued
// while it ran must not be acknowledged as durable when they went to the
// stale (or unlinked) log.
func TestRecordsQueuedDuringAFailedCompactionAreNotAcknowledged(t *testing.T) {
	for _, step := range []string{"snapshot", "rename"} {
		t.Run(step, func(t *testing.T) {
			setCompaction(t, 2)
			path := statePath(t)
			w := begun(t, path, 4)
			release, in := make(chan struct{}), make(chan struct{})
			compactions := 0
			testHookCompaction = func(s string) error {
				if compactions > 0 {
					compactions++
					return errors.New("EIO again") // the disk still fails: nothing more written
				}
				if s == step {
					compactions++
					close(in)
					<-release
					return errors.New("EIO")
				}
				return nil
			}
			t.Cleanup(func() { testHookCompaction = nil })
			w.record(pairOf(0))
			var wg sync.WaitGroup
			wg.Go(func() { w.record(pairOf(1)) }) // the compaction follows this one
			<-in
			var err2 error
			wg.Go(func() { err2 = w.commit(logRecordOf(pairOf(2)), nil) })
			waitFor(t, w, func() bool { return w.queued == 1 })
			close(release)
			wg.Wait()
			st, err := ReadState(path)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range st.Done {
				found = found || p.Host == "h3"
			}
			t.Logf("err2=%v found=%v pairs=%d compactions reaching %q=%d failed()=%v", err2, found, len(st.Done), step, compactions, w.failed())
			if err2 == nil && !found {
				t.Errorf("h3's record was acknowledged (err nil) but the state read back lacks it: %d pairs", len(st.Done))
			}
		})
	}
}
