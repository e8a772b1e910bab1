package rollout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/etcdtest"
)

// testLockTTL is the etcd lease of the tests' locks: short, so a lapse is
// quick to see.
const testLockTTL = 2 * time.Second

// fileStores opens stores of one state file: each call another value, as
// another process would.
func fileStores(t *testing.T) func() Store {
	t.Helper()
	path := statePath(t)
	return func() Store { return NewFileStore(path) }
}

// etcdStores starts an etcd and opens stores of one prefix in it: each call
// another client, as another machine would.
func etcdStores(t *testing.T, opts etcdtest.Options) (func() Store, *etcdtest.Server) {
	t.Helper()
	srv := etcdtest.Start(t, opts)
	return func() Store {
		t.Helper()
		s, err := OpenEtcdStore(EtcdOptions{Endpoints: []string{srv.Endpoint()}, Prefix: "/haroll/test", TLS: srv.ClientTLS(),
			DialTimeout: 2 * time.Second, LockTTL: testLockTTL})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}, srv
}

// eachStore runs f with the file store and with the etcd store (over
// mutual TLS when tls).
func eachStore(t *testing.T, tls bool, f func(t *testing.T, open func() Store)) {
	t.Run("file", func(t *testing.T) { f(t, fileStores(t)) })
	t.Run("etcd", func(t *testing.T) {
		open, _ := etcdStores(t, etcdtest.Options{TLS: tls})
		f(t, open)
	})
}

func lockInfo(id string) LockInfo {
	return LockInfo{RolloutID: id, Holder: "tester@" + id, Message: "deploy " + id, Kind: KindRollout, Image: "app:" + id}
}

func acquire(t *testing.T, s Store, id string, wait time.Duration) Lease {
	t.Helper()
	l, err := s.Acquire(t.Context(), lockInfo(id), wait)
	if err != nil {
		t.Fatalf("acquire %s: %v", id, err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

func TestTheFleetLockIsExclusiveAndARefusalNamesItsHolder(t *testing.T) {
	eachStore(t, true, func(t *testing.T, open func() Store) {
		a, b := open(), open()
		la := acquire(t, a, "r1", 0)
		if info := la.Info(); info.Token == 0 || info.Since.IsZero() || info.Store == "" || info.Holder != "tester@r1" {
			t.Errorf("lease info %+v: want a token, since, store and the holder", info)
		}
		_, err := b.Acquire(t.Context(), lockInfo("r2"), 0)
		var le *LockedError
		if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
			t.Fatalf("second acquire: %v, want a *LockedError", err)
		}
		if le.Holder.RolloutID != "r1" || !strings.Contains(err.Error(), "tester@r1") || !strings.Contains(err.Error(), `"deploy r1"`) {
			t.Errorf("refusal %q does not name the holder r1", err)
		}
		st, err := b.Status(t.Context())
		if err != nil || st == nil || st.Token != la.Info().Token || st.Image != "app:r1" {
			t.Errorf("status %+v, %v: want r1's info", st, err)
		}
		if err := la.Check(t.Context()); err != nil {
			t.Errorf("holder's check: %v", err)
		}
		if err := la.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := la.Release(t.Context()); err != nil {
			t.Errorf("second release: %v, want nil", err)
		}
		if err := la.Check(t.Context()); !errors.Is(err, ErrLockLost) {
			t.Errorf("check after release: %v, want ErrLockLost", err)
		}
		if st, err := b.Status(t.Context()); err != nil || st != nil {
			t.Errorf("status after release: %+v, %v, want free", st, err)
		}
		acquire(t, b, "r2", 0)
	})
}

func TestAnAcquireThatWaitsGetsTheLockOnceItsHolderLetsGo(t *testing.T) {
	eachStore(t, false, func(t *testing.T, open func() Store) {
		a, b := open(), open()
		la := acquire(t, a, "r1", 0)
		go func() {
			time.Sleep(500 * time.Millisecond)
			_ = la.Release(context.Background())
		}()
		t0 := time.Now()
		lb := acquire(t, b, "r2", 10*time.Second)
		if d := time.Since(t0); d < 400*time.Millisecond {
			t.Errorf("got the lock after %v, before its holder let go", d)
		}
		if lb.Info().Token <= la.Info().Token {
			t.Errorf("token %d after %d: want it to rise", lb.Info().Token, la.Info().Token)
		}
		// A wait that ends first is a refusal naming the holder.
		_, err := a.Acquire(t.Context(), lockInfo("r3"), 300*time.Millisecond)
		var le *LockedError
		if !errors.As(err, &le) || le.Holder.RolloutID != "r2" {
			t.Errorf("acquire while r2 holds it, waiting 300ms: %v, want a *LockedError naming r2", err)
		}
	})
}

// Environment of the lock-holding child: the store it takes the lock in.
const (
	lockChildFile = "HAROLL_LOCK_CHILD_FILE" // a state file
	lockChildEtcd = "HAROLL_LOCK_CHILD_ETCD" // an etcd endpoint (prefix /haroll/test)
)

// TestTheLockHoldingChild is the child of the crash tests: it takes the
// lock, says "held", and holds it until it is killed.
func TestTheLockHoldingChild(t *testing.T) {
	var s Store
	switch file, ep := os.Getenv(lockChildFile), os.Getenv(lockChildEtcd); {
	case file != "":
		s = NewFileStore(file)
	case ep != "":
		var err error
		if s, err = OpenEtcdStore(EtcdOptions{Endpoints: []string{ep}, Prefix: "/haroll/test", LockTTL: testLockTTL}); err != nil {
			t.Fatal(err)
		}
	default:
		t.Skip("the child of TestALockHeldByAProcessThatWasKilledIsFreeAgain")
	}
	if _, err := s.Acquire(t.Context(), lockInfo("child"), 0); err != nil {
		t.Fatal(err)
	}
	fmt.Println("held")
	select {}
}

// lockHeldByAChild starts a child process that takes the lock in the store
// env names, and returns it once it holds it.
func lockHeldByAChild(t *testing.T, env string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTheLockHoldingChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		t.Fatalf("the child said %q, %v: want held", line, err)
	}
	return cmd
}

func TestALockHeldByAProcessThatWasKilledIsFreeAgain(t *testing.T) {
	t.Run("file: at once", func(t *testing.T) {
		path := statePath(t)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		child := lockHeldByAChild(t, lockChildFile+"="+path)
		s := NewFileStore(path)
		if _, err := s.Acquire(t.Context(), lockInfo("r2"), 0); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "child") {
			t.Fatalf("acquire while the child holds it: %v, want it refused naming the child", err)
		}
		_ = child.Process.Signal(syscall.SIGKILL)
		_ = child.Wait()
		acquire(t, s, "r2", 0)
	})
	t.Run("etcd: after lock_ttl", func(t *testing.T) {
		open, srv := etcdStores(t, etcdtest.Options{})
		child := lockHeldByAChild(t, lockChildEtcd+"="+srv.Endpoint())
		s := open()
		if _, err := s.Acquire(t.Context(), lockInfo("r2"), 0); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "child") {
			t.Fatalf("acquire while the child holds it: %v, want it refused naming the child", err)
		}
		_ = child.Process.Signal(syscall.SIGKILL)
		_ = child.Wait()
		t0 := time.Now()
		acquire(t, s, "r2", testLockTTL+5*time.Second)
		d := time.Since(t0)
		if d > testLockTTL+2*time.Second {
			t.Errorf("lock taken %v after its holder was killed, want within lock_ttl %v and a margin", d, testLockTTL)
		}
		t.Logf("a killed holder's etcd lock was taken %v later (lock_ttl %v)", d.Round(time.Millisecond), testLockTTL)
	})
}

func TestForceReleaseFreesTheLockAndTheHoldersCheckThenFails(t *testing.T) {
	eachStore(t, false, func(t *testing.T, open func() Store) {
		a, b := open(), open()
		la := acquire(t, a, "r1", 0)
		who, err := b.ForceRelease(t.Context())
		if err != nil || who == nil || who.RolloutID != "r1" {
			t.Fatalf("force release: %+v, %v: want r1", who, err)
		}
		if err := la.Check(t.Context()); !errors.Is(err, ErrLockLost) {
			t.Errorf("holder's check after force release: %v, want ErrLockLost", err)
		}
		lb := acquire(t, b, "r2", 0)
		if err := la.Check(t.Context()); !errors.Is(err, ErrLockLost) {
			t.Errorf("old holder's check once r2 holds it: %v, want ErrLockLost", err)
		}
		// The old holder's release leaves the new holder's lock alone.
		_ = la.Release(t.Context())
		if err := lb.Check(t.Context()); err != nil {
			t.Errorf("r2's check after r1's release: %v", err)
		}
		if st, _ := a.Status(t.Context()); st == nil || st.RolloutID != "r2" {
			t.Errorf("status %+v, want r2", st)
		}
		if who, err := b.ForceRelease(t.Context()); err != nil || who == nil || who.RolloutID != "r2" {
			t.Errorf("force release of r2: %+v, %v", who, err)
		}
		if who, err := b.ForceRelease(t.Context()); err != nil || who != nil {
			t.Errorf("force release of a free lock: %+v, %v, want nil, nil", who, err)
		}
	})
}

func TestCheckFailsWhileEtcdIsDownAndANewAcquireWorksOnceItIsBack(t *testing.T) {
	open, srv := etcdStores(t, etcdtest.Options{})
	s := open()
	l := acquire(t, s, "r1", 0)
	srv.Stop()
	t0 := time.Now()
	err := l.Check(t.Context())
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("check with etcd stopped: %v, want ErrLockLost", err)
	}
	if d := time.Since(t0); d > etcdCheckTimeout+time.Second {
		t.Errorf("check took %v, want it bounded by %v", d, etcdCheckTimeout)
	}
	t.Logf("check with etcd down: %v after %v", err, time.Since(t0).Round(time.Millisecond))
	srv.Start()
	// The old lease lapsed meanwhile, or is taken over after its TTL.
	l2 := acquire(t, open(), "r2", testLockTTL+5*time.Second)
	if err := l2.Check(t.Context()); err != nil {
		t.Errorf("new holder's check: %v", err)
	}
	if l2.Info().Token <= l.Info().Token {
		t.Errorf("token %d after %d, want it to rise", l2.Info().Token, l.Info().Token)
	}
}

func TestTokensRiseAcrossAcquisitionsAndStores(t *testing.T) {
	openEtcd, _ := etcdStores(t, etcdtest.Options{})
	openFile := fileStores(t)
	var last uint64
	for i, s := range []Store{openFile(), openEtcd(), openEtcd(), openFile(), openFile(), openEtcd()} {
		l := acquire(t, s, "r", 0)
		if tok := l.Info().Token; tok <= last {
			t.Errorf("acquisition %d (%s): token %d after %d, want it to rise", i, s, tok, last)
		} else {
			last = tok
		}
		_ = l.Release(t.Context())
	}
}

func TestTheStateRoundTripsThroughTheWriterAndResumesFromAnotherStore(t *testing.T) {
	setCompaction(t, 4)
	eachStore(t, true, func(t *testing.T, open func() Store) {
		a := open()
		la := acquire(t, a, "r1", 0)
		w := newStateWriterTo(a.stateBackend(la), nil)
		st := planState(10)
		st.RolloutID, st.Token = la.Info().RolloutID, la.Info().Token
		if err := w.begin(st); err != nil {
			t.Fatal(err)
		}
		for i := range 6 { // past minCompaction: a compaction
			w.record(pairOf(i))
		}
		if err := w.noteOldImage("h1", "a", "app:v1", "app:v2"); err != nil {
			t.Fatal(err)
		}
		if err := w.failed(); err != nil {
			t.Fatal(err)
		}
		if ws := w.writes(); ws.Snapshots < 2 {
			t.Errorf("writes %+v: want a compaction", ws)
		}
		w.close()
		_ = la.Release(t.Context())

		// Another machine: another store value, another lease.
		b := open()
		got, err := LoadResumableFrom(t.Context(), b, "app:v2")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Done) != 6 || got.RolloutID != "r1" || got.Canary == nil || got.Canary.OldImages[canaryKey("h1", "a")] != "app:v1" {
			t.Fatalf("state read back: %d done, rollout %q, canary %+v", len(got.Done), got.RolloutID, got.Canary)
		}
		gen := got.Generation
		lb := acquire(t, b, "r2", 0)
		w2 := newStateWriterTo(b.stateBackend(lb), nil)
		w2.resume(got)
		for i := 6; i < 10; i++ {
			w2.record(pairOf(i))
		}
		if err := w2.complete(HostDone, ""); err != nil {
			t.Fatal(err)
		}
		w2.close()
		final, err := open().ReadState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !final.Complete || len(final.Done) != 10 || final.Generation <= gen {
			t.Errorf("final state: complete %v, %d done, generation %d after %d", final.Complete, len(final.Done), final.Generation, gen)
		}
		seen := map[string]bool{}
		for _, p := range final.Done {
			if seen[p.Host] {
				t.Errorf("%s recorded twice", p.Host)
			}
			seen[p.Host] = true
		}
		if _, err := LoadResumableFrom(t.Context(), b, ""); !errors.Is(err, ErrNothingToResume) {
			t.Errorf("resume of a complete rollout: %v, want ErrNothingToResume", err)
		}
	})
}

func TestASnapshotLargerThanAnEtcdRequestIsWrittenInChunks(t *testing.T) {
	open, _ := etcdStores(t, etcdtest.Options{})
	s := open()
	l := acquire(t, s, "r1", 0)
	w := newStateWriterTo(s.stateBackend(l), nil)
	st := planState(20000) // about 3 MB of JSON: above etcd's 1.5 MiB a request
	if err := w.begin(st); err != nil {
		t.Fatal(err)
	}
	w.record(pairOf(0))
	if err := w.failed(); err != nil {
		t.Fatal(err)
	}
	w.close()
	got, err := open().ReadState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Hosts) != 20000 || len(got.Done) != 1 {
		t.Errorf("read back %d hosts, %d done", len(got.Hosts), len(got.Done))
	}
}

func TestAnEtcdStateWriteIsRefusedOnceTheLockIsLost(t *testing.T) {
	open, _ := etcdStores(t, etcdtest.Options{})
	s := open()
	l := acquire(t, s, "r1", 0)
	w := newStateWriterTo(s.stateBackend(l), nil)
	if err := w.begin(planState(3)); err != nil {
		t.Fatal(err)
	}
	w.record(pairOf(0))
	if _, err := open().ForceRelease(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.record(pairOf(1))
	if err := w.failed(); !errors.Is(err, ErrState) || !errors.Is(err, ErrLockLost) {
		t.Fatalf("write after the lock was released: %v, want ErrState and ErrLockLost", err)
	}
	w.close()
	got, err := open().ReadState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Done) != 1 {
		t.Errorf("%d pairs in etcd, want the one written under the lock", len(got.Done))
	}
	// Without a lease at all, nothing is written.
	if err := newStateWriterTo(s.stateBackend(nil), nil).begin(planState(3)); err == nil {
		t.Error("a state written without the lock: want it refused")
	}
}

func TestADecisionIsRecordedOnlyForAWaitingCanaryAndTakenByTheCoordinator(t *testing.T) {
	eachStore(t, false, func(t *testing.T, open func() Store) {
		a := open()
		if _, err := DecideIn(t.Context(), a, DecisionPromote, "op"); !errors.Is(err, ErrNoCanaryWaiting) {
			t.Errorf("promote with no rollout: %v, want ErrNoCanaryWaiting", err)
		}
		l := acquire(t, a, "r1", 0)
		w := newStateWriterTo(a.stateBackend(l), nil)
		if err := w.begin(planState(2)); err != nil {
			t.Fatal(err)
		}
		w.canaryState().Phase = CanaryAnalysis
		w.saveCanary()
		other := open() // a person on another machine
		if _, err := DecideIn(t.Context(), other, DecisionPromote, "op"); !errors.Is(err, ErrNoCanaryWaiting) || !strings.Contains(err.Error(), "under analysis") {
			t.Errorf("promote under analysis: %v, want a refusal", err)
		}
		w.canaryState().Phase = CanaryPaused
		w.saveCanary()
		if _, err := DecideIn(t.Context(), other, DecisionPromote, "op"); err != nil {
			t.Fatal(err)
		}
		// The coordinator takes it under the decision lock and records the
		// promotion; an abort after it is too late.
		r := &run{e: &Executor{}, log: w.log, w: w, decisions: a.decisions(l)}
		d, err := r.decide(w.canaryState(), "passed", false, DecisionPromote, DecisionAbort)
		if err != nil || d != DecisionPromote {
			t.Fatalf("decide: %q, %v, want promote", d, err)
		}
		if left, _ := a.decisions(nil).peek(t.Context()); left.Decision != "" {
			t.Errorf("decision %+v left after it was taken", left)
		}
		if _, err := DecideIn(t.Context(), other, DecisionAbort, "op"); !errors.Is(err, ErrNoCanaryWaiting) || !strings.Contains(err.Error(), "too late") {
			t.Errorf("abort after the promotion: %v, want too late", err)
		}
		w.close()
	})
}

func TestTheHistoryIndexIsNewestFirst(t *testing.T) {
	eachStore(t, false, func(t *testing.T, open func() Store) {
		s := open()
		if recs, err := s.Rollouts(t.Context(), 0); err != nil || len(recs) != 0 {
			t.Fatalf("empty history: %v, %v", recs, err)
		}
		for _, tok := range []uint64{20, 3, 100, 7} {
			if err := s.RecordRollout(t.Context(), RolloutRecord{RolloutID: "r", Token: tok, Kind: KindRollout, Outcome: HostDone}); err != nil {
				t.Fatal(err)
			}
		}
		recs, err := open().Rollouts(t.Context(), 3)
		if err != nil {
			t.Fatal(err)
		}
		var toks []uint64
		for _, r := range recs {
			toks = append(toks, r.Token)
		}
		if !slices.Equal(toks, []uint64{100, 20, 7}) {
			t.Errorf("tokens %v, want 100 20 7", toks)
		}
	})
}

func TestARolloutOnEtcdIsResumedFromAnotherMachine(t *testing.T) {
	open, _ := etcdStores(t, etcdtest.Options{})
	f := newFleet(t, 6, "a", "b")
	a := open()
	la := acquire(t, a, "r1", 0)
	e := f.executor()
	e.Store, e.Lease = a, la
	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	if _, err := e.Run(ctx, hostNames(6), []string{"a", "b"}, mustStrategy(t, "2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	_ = la.Release(t.Context())

	b := open()
	st, err := LoadResumableFrom(t.Context(), b, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Done) != 4 || st.RolloutID != "r1" || st.Token != la.Info().Token || st.Kind != KindRollout || st.Message != "deploy r1" {
		t.Fatalf("state: %d done, rollout %q token %d kind %q message %q", len(st.Done), st.RolloutID, st.Token, st.Kind, st.Message)
	}
	lb := acquire(t, b, "r2", 0)
	e = f.executor()
	e.Store, e.Lease = b, lb
	res, err := e.Resume(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals != (Totals{Hosts: 6, Done: 6}) || res.Resumed != 4 {
		t.Errorf("totals %+v, resumed %d", res.Totals, res.Resumed)
	}
	done, err := open().ReadState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !done.Complete || len(done.Done) != 12 || done.RolloutID != "r2" || done.Token != lb.Info().Token {
		t.Errorf("final state: complete %v, %d done, rollout %q token %d", done.Complete, len(done.Done), done.RolloutID, done.Token)
	}
}

func TestConcurrentRecordsIntoEtcdAreGroupedAndAllDurable(t *testing.T) {
	const n = 2000
	open, _ := etcdStores(t, etcdtest.Options{TLS: true})
	s := open()
	l := acquire(t, s, "r1", 0)
	w := newStateWriterTo(s.stateBackend(l), nil)
	if err := w.begin(planState(n)); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { w.record(pairOf(i)) })
	}
	wg.Wait()
	d := time.Since(t0)
	w.close()
	if err := w.failed(); err != nil {
		t.Fatal(err)
	}
	ws := w.writes()
	t.Logf("%d concurrent records into etcd over mutual TLS: %v; %d writes (%d snapshots), %v in all, %v at most",
		n, d.Round(time.Millisecond), ws.Count, ws.Snapshots, ws.Total.Round(time.Millisecond), ws.Max.Round(time.Millisecond))
	if ws.Count > n/4 {
		t.Errorf("writes %+v: %d records took %d writes, want them grouped", ws, n, ws.Count)
	}
	st, err := open().ReadState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range st.Done {
		seen[p.Host]++
	}
	if len(seen) != n || len(st.Done) != n {
		t.Errorf("%d pairs of %d hosts read back, want %d once each", len(st.Done), len(seen), n)
	}
}

func TestOnEtcdAnAbortFromAnotherMachineAsTheCanaryIsPromotedIsCarriedOutOrRefusedNeverIgnored(t *testing.T) {
	open, _ := etcdStores(t, etcdtest.Options{})
	for _, pause := range []bool{false, true} {
		t.Run(fmt.Sprintf("pause=%v", pause), func(t *testing.T) {
			f := newFleet(t, 4, "a", "b", "c")
			p := quickCanary
			p.Pause = pause
			e, s, _ := canaryExecutor(t, f, p)
			coord, other := open(), open()
			e.Store, e.Lease = coord, acquire(t, coord, "r1", 0)
			var aborted error
			done := make(chan struct{})
			testHookDecided = func() { // the abort comes as the promotion is decided
				testHookDecided = nil
				go func() {
					defer close(done)
					_, aborted = DecideIn(context.Background(), other, DecisionAbort, "late")
				}()
				select {
				case <-done:
				case <-time.After(200 * time.Millisecond):
				}
			}
			t.Cleanup(func() { testHookDecided = nil })
			if pause {
				go func() {
					for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
						if st, err := other.ReadState(context.Background()); err == nil && st.Canary != nil && st.Canary.Phase == CanaryPaused {
							if _, err := DecideIn(context.Background(), other, DecisionPromote, "test"); err != nil {
								t.Error(err)
							}
							return
						}
					}
					t.Error("the canary never paused")
				}()
			}
			res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b", "c"}, s)
			<-done
			canary := hostNames(4)[0]
			f.mu.Lock()
			promoted, image := f.promotes[canary] > 0, f.hosts[canary].imageOf("a")
			f.mu.Unlock()
			switch {
			case aborted == nil && promoted:
				t.Fatalf("the person was told the abort was recorded, and the canary was promoted (run: %v)", err)
			case aborted == nil:
				if !errors.Is(err, ErrCanaryFailed) || image != "app:v1" {
					t.Fatalf("abort recorded: the run %v, slot a on %s; want the canary rolled back", err, image)
				}
			case !errors.Is(aborted, ErrNoCanaryWaiting) || !strings.Contains(aborted.Error(), "too late"):
				t.Fatalf("abort refused with %v: want a refusal that says it is too late", aborted)
			case !promoted || err != nil || res.Totals.Done != 4:
				t.Fatalf("abort refused as too late, but the canary was not promoted: %v, %+v", err, res.Totals)
			}
		})
	}
}
