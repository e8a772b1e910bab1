package rollout

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// The state writer's cost per finished pair when the state already holds
// 10,000 or 100,000 pairs, against a copy of the writer before version 2
// (the whole state as indented JSON, written, fsynced and renamed after
// every pair, under one lock), in one run:
//
//	go test -run '^$' -bench 'StateRecord|StateStep' -benchtime 20x ./rollout/
//
// The state file is under the test's temporary directory: run it on the
// disk a coordinator writes to.

// wholeFileWriter is the state writer before version 2, kept as the
// baseline.
type wholeFileWriter struct {
	mu   sync.Mutex
	path string
	st   *State
}

func (w *wholeFileWriter) record(p PairResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.Done = append(w.st.Done, p)
	w.st.Updated = time.Now()
	if err := atomicfile.WriteJSON(w.path, w.st); err != nil {
		panic(err)
	}
}

// filledState is a state of n hosts and slot "a" whose n pairs are done.
func filledState(n int) *State {
	st := planState(n)
	st.Version = stateVersionV1
	for i := range n {
		st.Done = append(st.Done, pairOf(i))
	}
	return st
}

// BenchmarkStateRecord: one pair recorded after another, by one caller; an
// op is one record, durable on return.
func BenchmarkStateRecord(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("writer=whole-file/pairs=%d", n), func(b *testing.B) {
			w := &wholeFileWriter{path: filepath.Join(b.TempDir(), "rollout.json"), st: filledState(n)}
			i := n
			for b.Loop() {
				w.record(pairOf(i))
				i++
			}
		})
		b.Run(fmt.Sprintf("writer=log/pairs=%d", n), func(b *testing.B) {
			w := newStateWriter(filepath.Join(b.TempDir(), "rollout.json"), nil)
			if err := w.begin(filledState(n)); err != nil {
				b.Fatal(err)
			}
			defer w.close()
			i := n
			for b.Loop() {
				w.record(pairOf(i))
				i++
			}
			reportWrites(b, w, b.N)
		})
	}
}

// BenchmarkStateStep: a step of 1,000 hosts finishing at once, each
// recording its pair from its own goroutine, as the executor does; an op is
// the whole step. Compactions are included as they fall (the log is
// compacted once it holds as many records as the snapshot has pairs).
func BenchmarkStateStep(b *testing.B) {
	const hosts = 1000
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("writer=log/pairs=%d/hosts=%d", n, hosts), func(b *testing.B) {
			w := newStateWriter(filepath.Join(b.TempDir(), "rollout.json"), nil)
			if err := w.begin(filledState(n)); err != nil {
				b.Fatal(err)
			}
			defer w.close()
			i := n
			for b.Loop() {
				var wg sync.WaitGroup
				for h := range hosts {
					wg.Go(func() { w.record(pairOf(i + h)) })
				}
				wg.Wait()
				i += hosts
			}
			reportWrites(b, w, b.N*hosts)
		})
	}
}

// reportWrites adds the writer's fsync'd writes per op and per pair.
func reportWrites(b *testing.B, w *stateWriter, pairs int) {
	b.Helper()
	if err := w.failed(); err != nil {
		b.Fatal(err)
	}
	ws := w.writes()
	b.ReportMetric(float64(ws.Count-1)/float64(b.N), "writes/op") // fsync'd, less begin's snapshot
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pairs), "ns/pair")
	b.ReportMetric(float64(ws.Snapshots-1), "compactions")
}

// BenchmarkStateRollout: the state writes of a whole rollout of n pairs
// from an empty state, in steps of 1,000 hosts finishing at once; an op is
// the rollout, compactions included. (The whole-file writer would write
// n²/2 pairs' worth of JSON: see BenchmarkStateRecord for one of its writes.)
func BenchmarkStateRollout(b *testing.B) {
	const hosts = 1000
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("writer=log/pairs=%d", n), func(b *testing.B) {
			var last StateWrites
			for b.Loop() {
				w := newStateWriter(filepath.Join(b.TempDir(), "rollout.json"), nil)
				if err := w.begin(planState(n)); err != nil {
					b.Fatal(err)
				}
				for step := 0; step < n; step += hosts {
					var wg sync.WaitGroup
					for h := range hosts {
						wg.Go(func() { w.record(pairOf(step + h)) })
					}
					wg.Wait()
				}
				if err := w.failed(); err != nil {
					b.Fatal(err)
				}
				last = w.writes()
				w.close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pair")
			b.ReportMetric(float64(last.Count), "writes/op")
			b.ReportMetric(float64(last.Snapshots-1), "compactions/op")
			b.ReportMetric(float64(last.Max.Microseconds())/1000, "max_write_ms")
		})
	}
}
