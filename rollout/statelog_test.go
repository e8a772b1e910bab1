package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// planState is a new rollout's state of n hosts and slot "a", in one batch.
func planState(n int) *State {
	hosts := hostNames(n)
	return &State{Version: stateVersion, Image: "app:v2", Slots: []string{"a"}, Hosts: hosts, Done: []PairResult{},
		Plan: Plan{Batches: []Batch{{Hosts: hosts, Steps: []Step{{Slot: "a", Hosts: hosts}}}}}, Started: time.Now()}
}

func pairOf(i int) PairResult {
	return PairResult{Batch: 1, Host: fmt.Sprintf("h%d", i+1), Slot: "a", Result: ResultReplaced, Duration: time.Millisecond, Finished: time.Now()}
}

// begun is a writer of a new state of n hosts into path, begun.
func begun(t *testing.T, path string, n int) *stateWriter {
	t.Helper()
	w := newStateWriter(path, nil)
	if err := w.begin(planState(n)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.files != nil {
			_ = w.files.close()
		}
	})
	return w
}

// wantPairsOnce fails unless the state at path records hosts h1..hn, each
// once.
func wantPairsOnce(t *testing.T, path string, n int) *State {
	t.Helper()
	st, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range st.Done {
		seen[p.Host]++
	}
	for i := range n {
		if h := fmt.Sprintf("h%d", i+1); seen[h] != 1 {
			t.Errorf("%s recorded %d times, want once", h, seen[h])
		}
	}
	if len(st.Done) != n {
		t.Errorf("%d pairs recorded, want %d", len(st.Done), n)
	}
	return st
}

// setCompaction makes the writers compact after n records for one test.
func setCompaction(t *testing.T, n int) {
	t.Helper()
	old := minCompaction
	minCompaction = n
	t.Cleanup(func() { minCompaction = old })
}

func TestARecordedPairIsInTheStateReadBackWithItsCanaryAndCompletion(t *testing.T) {
	path := statePath(t)
	w := begun(t, path, 3)
	for i := range 3 {
		w.record(pairOf(i))
	}
	if err := w.noteOldImage("h1", "a", "app:v1", "app:v2"); err != nil {
		t.Fatal(err)
	}
	w.canaryState().Phase = CanaryAnalysis
	w.saveCanary()
	if err := w.promoting("passed"); err != nil {
		t.Fatal(err)
	}
	if err := w.complete(HostDone, ""); err != nil {
		t.Fatal(err)
	}
	st := wantPairsOnce(t, path, 3)
	if !st.Complete || st.Outcome != HostDone || st.Canary == nil || st.Canary.OldImages["h1 a"] != "app:v1" ||
		st.Canary.Phase != CanaryPromoting || st.Canary.Verdict != "passed" || st.Version != stateVersion {
		t.Errorf("read back complete %v outcome %q canary %+v version %d", st.Complete, st.Outcome, st.Canary, st.Version)
	}
	if ws := w.writes(); ws.Count != 8 || ws.Snapshots != 1 || ws.Records != 7 || ws.Total <= 0 || ws.Max <= 0 {
		t.Errorf("writes %+v, want 1 snapshot and 7 records in 8 fsync'd writes", ws)
	}
}

func TestAnOldImageAlreadyNotedWritesNothing(t *testing.T) {
	w := begun(t, statePath(t), 1)
	for range 2 {
		if err := w.noteOldImage("h1", "a", "app:v1", "app:v2"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.noteOldImage("h1", "b", "app:v2", "app:v2"); err != nil {
		t.Fatal(err)
	}
	if ws := w.writes(); ws.Records != 1 {
		t.Errorf("writes %+v, want one record", ws)
	}
}

func TestATornLastRecordIsIgnored(t *testing.T) {
	for name, tail := range map[string][]byte{
		"cut short":   nil, // filled in below: the first half of a record
		"zero filled": make([]byte, 300),
		"bad sum":     []byte("00000000 {\"pair\":{\"host\":\"h9\"}}\n"),
	} {
		t.Run(name, func(t *testing.T) {
			path := statePath(t)
			w := begun(t, path, 3)
			for i := range 3 {
				w.record(pairOf(i))
			}
			if tail == nil {
				line, _ := encodeRecord(logRecord{Pair: new(pairOf(3))})
				tail = line[:len(line)/2]
			}
			appendTo(t, StateLog(path), tail)
			wantPairsOnce(t, path, 3)
		})
	}
}

func TestACorruptRecordInTheMiddleIsRefusedWithAnErrorThatSaysSo(t *testing.T) {
	path := statePath(t)
	w := begun(t, path, 4)
	for i := range 4 {
		w.record(pairOf(i))
	}
	b, err := os.ReadFile(StateLog(path))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte{'\n'})
	lines[2] = bytes.Replace(lines[2], []byte(`"h2"`), []byte(`"h7"`), 1) // line 3: the second pair
	if err := os.WriteFile(StateLog(path), bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ReadState(path)
	if err == nil || !strings.Contains(err.Error(), "line 3 is corrupt") || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("got %v, want line 3 named as corrupt", err)
	}
	if _, err := LoadResumable(path, ""); err == nil {
		t.Error("a resume accepted a damaged state")
	}
}

func TestACompactionCutShortAtAnyStepLosesNothingAndDoublesNothing(t *testing.T) {
	setCompaction(t, 8)
	for _, step := range []string{"log", "snapshot", "rename"} {
		t.Run(step, func(t *testing.T) {
			path := statePath(t)
			crash := errors.New("killed")
			w := begun(t, path, 40)
			testHookCompaction = func(s string) error {
				if s == step {
					return crash
				}
				return nil
			}
			t.Cleanup(func() { testHookCompaction = nil })
			n := 0
			for ; n < 40 && w.failed() == nil; n++ {
				w.record(pairOf(n))
			}
			if !errors.Is(w.failed(), crash) {
				t.Fatalf("the compaction did not stop: %v", w.failed())
			}
			testHookCompaction = nil
			// Every pair recorded is there once, the one whose group commit
			// the compaction followed included.
			st := wantPairsOnce(t, path, n)

			// A resume goes on from there and compacts again.
			r := newStateWriter(path, nil)
			r.resume(st)
			defer func() { _ = r.files.close() }()
			for i := n; i < 40; i++ {
				r.record(pairOf(i))
			}
			if err := r.failed(); err != nil {
				t.Fatal(err)
			}
			wantPairsOnce(t, path, 40)
			if ws := r.writes(); ws.Snapshots < 2 {
				t.Errorf("writes %+v, want a compaction after the resume", ws)
			}
		})
	}
}

func TestCompactionKeepsTheLogShorterThanTheSnapshot(t *testing.T) {
	setCompaction(t, 4)
	path := statePath(t)
	w := begun(t, path, 100)
	for i := range 100 {
		w.record(pairOf(i))
	}
	wantPairsOnce(t, path, 100)
	_, recs, err := readLog(StateLog(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) > 64 {
		t.Errorf("the log holds %d records after 100 pairs, want fewer than the snapshot's", len(recs))
	}
	// Doubling: 4, 8, 16, 32, 64 pairs (and begin): a handful of snapshots.
	if ws := w.writes(); ws.Snapshots < 4 || ws.Snapshots > 7 {
		t.Errorf("%d snapshots for 100 pairs, want about log2(100/4)", ws.Snapshots)
	}
}

func TestAVersion1StateFileIsReadAndTheWriterTurnsItIntoVersion2(t *testing.T) {
	path := statePath(t)
	v1 := planState(3)
	v1.Version = stateVersionV1
	v1.Done = []PairResult{pairOf(0), pairOf(1)}
	b, err := json.MarshalIndent(v1, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(strings.TrimSuffix(path, "/rollout.json"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := LoadResumable(path, "app:v2")
	if err != nil || len(st.Done) != 2 || st.Version != stateVersionV1 {
		t.Fatalf("read %+v, %v", st, err)
	}
	w := newStateWriter(path, nil)
	w.resume(st)
	if got, _ := ReadState(path); got.Version != stateVersionV1 {
		t.Errorf("version %d before the first change, want the file untouched", got.Version)
	}
	w.record(pairOf(2))
	defer func() { _ = w.files.close() }()
	got := wantPairsOnce(t, path, 3)
	if got.Version != stateVersion {
		t.Errorf("version %d after a resume, want %d", got.Version, stateVersion)
	}
}

func TestAThousandConcurrentRecordsShareAFewFsyncsAndAreAllDurable(t *testing.T) {
	const n = 1000
	path := statePath(t)
	w := begun(t, path, n)
	// The first write waits until every other caller queued its record, as
	// a step's hosts finishing during one fsync do.
	var once sync.Once
	testHookAppend = func() error {
		once.Do(func() {
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				w.mu.Lock()
				q := w.queued
				w.mu.Unlock()
				if q == n-1 {
					return
				}
			}
			t.Error("the other callers never queued their records")
		})
		return nil
	}
	t.Cleanup(func() { testHookAppend = nil })
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { w.record(pairOf(i)) })
	}
	wg.Wait()
	wantPairsOnce(t, path, n)
	if ws := w.writes(); ws.Count-ws.Snapshots != 2 || ws.Records != n {
		t.Errorf("writes %+v, want %d records in 2 group commits", ws, n)
	}
}

func TestConcurrentRecordsWithoutAHookStillBatch(t *testing.T) {
	const n = 1000
	path := statePath(t)
	w := begun(t, path, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { w.record(pairOf(i)) })
	}
	wg.Wait()
	wantPairsOnce(t, path, n)
	ws := w.writes()
	t.Logf("%d records from %d goroutines: %d fsync'd writes, %v in all, %v at most", n, n, ws.Count, ws.Total, ws.Max)
	if ws.Count > n/4 {
		t.Errorf("writes %+v: %d records took %d writes, want them grouped", ws, n, ws.Count)
	}
}

func TestARecordAfterAFailedWriteIsKeptInMemoryAndNotWritten(t *testing.T) {
	path := statePath(t)
	w := begun(t, path, 3)
	w.record(pairOf(0))
	_ = w.files.(*stateFiles).log.Close() // the next write fails
	w.record(pairOf(1))
	if err := w.failed(); !errors.Is(err, ErrState) {
		t.Fatalf("failed() = %v, want ErrState", err)
	}
	w.record(pairOf(2))
	if err := w.complete(HostDone, ""); !errors.Is(err, ErrState) {
		t.Errorf("complete after a failed write: %v, want ErrState", err)
	}
	if len(w.st.Done) != 3 {
		t.Errorf("%d pairs in memory, want 3", len(w.st.Done))
	}
	wantPairsOnce(t, path, 1)
}

func TestAStateInMemoryOnlyWritesNoFile(t *testing.T) {
	w := newStateWriter("", nil)
	if err := w.begin(planState(2)); err != nil {
		t.Fatal(err)
	}
	w.record(pairOf(0))
	if err := w.complete(HostDone, ""); err != nil || len(w.st.Done) != 1 || !w.st.Complete {
		t.Errorf("memory state %+v, %v", w.st, err)
	}
	if ws := w.writes(); ws.Count != 0 {
		t.Errorf("writes %+v, want none", ws)
	}
}

func TestAReaderDuringCompactionsSeesEveryRecordedPair(t *testing.T) {
	setCompaction(t, 16)
	path := statePath(t)
	w := begun(t, path, 400)
	stop := make(chan struct{})
	var seen []int
	var readErr error
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			w.mu.Lock()
			before := len(w.st.Done) - w.queued // durable at least
			if w.writing {
				before = -1
			}
			w.mu.Unlock()
			st, err := ReadState(path)
			if err != nil {
				readErr = err
				return
			}
			if before >= 0 && len(st.Done) < before {
				seen = append(seen, len(st.Done), before)
			}
		}
	})
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Go(func() { w.record(pairOf(i)) })
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	if readErr != nil {
		t.Fatalf("a reader met %v", readErr)
	}
	if len(seen) > 0 {
		t.Errorf("a reader saw fewer pairs than were durable (read, durable): %v", seen)
	}
	wantPairsOnce(t, path, 400)
}

func appendTo(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestALogNewerThanItsSnapshotIsRefusedOnceReadingAgainDoesNotHelp(t *testing.T) {
	path := statePath(t)
	w := begun(t, path, 2)
	w.record(pairOf(0))
	// A snapshot of an older generation put back by hand under the log.
	old := planState(2)
	old.Version, old.Generation = stateVersion, w.files.generation()-1
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ReadState(path)
	if err == nil || !strings.Contains(err.Error(), "do not belong together") {
		t.Fatalf("got %v, want the snapshot and the log refused as not belonging together", err)
	}
}

func TestARolloutRecordedByAnOlderHarollInVersion1ResumesAndIsRecordedInVersion2(t *testing.T) {
	f := newFleet(t, 6, "a", "b")
	path := statePath(t)
	e := f.executor()
	e.StateFile = path
	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	if _, err := e.Run(ctx, hostNames(6), []string{"a", "b"}, mustStrategy(t, "2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	first := f.allCalls()
	// The same progress as an older haroll wrote it: one JSON file.
	st, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	st.Version, st.Generation = stateVersionV1, 0
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(StateLog(path)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	st, err = LoadResumable(path, "app:v2")
	if err != nil || st.Version != stateVersionV1 || len(st.Done) != 4 {
		t.Fatalf("read %+v, %v", st, err)
	}
	e = f.executor()
	e.StateFile = path
	res, err := e.Resume(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if resumed := f.allCalls()[len(first):]; len(resumed) != 8 {
		t.Errorf("the resume asked %v, want h3..h6 for a and b", resumed)
	}
	if res.Resumed != 4 || res.StateWrites.Snapshots != 1 || res.StateWrites.Count < 2 {
		t.Errorf("resumed %d, state writes %+v: want 4 resumed, a snapshot with the first change, then the log", res.Resumed, res.StateWrites)
	}
	got, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string]bool{}
	for _, p := range got.Done {
		pairs[p.Host+" "+p.Slot] = true
	}
	if got.Version != stateVersion || !got.Complete || len(got.Done) != 12 || len(pairs) != 12 {
		t.Errorf("version %d complete %v, %d pairs (%d distinct) after the resume, want version %d, complete, 12",
			got.Version, got.Complete, len(got.Done), len(pairs), stateVersion)
	}
}

func TestARecordReturnsOnlyOnceItsWriteIsDone(t *testing.T) {
	w := begun(t, statePath(t), 2)
	release := make(chan struct{})
	testHookAppend = func() error { <-release; return nil }
	t.Cleanup(func() { testHookAppend = nil })
	returned := make(chan struct{})
	go func() {
		w.record(pairOf(0))
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("record returned while its write was held")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-returned
	if ws := w.writes(); ws.Records != 1 {
		t.Errorf("writes %+v, want the record written", ws)
	}
}
