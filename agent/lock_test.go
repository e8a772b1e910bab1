package agent

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// Reading who holds the host lock (Status, every metrics scrape) must never
// make a redeploy, promote or recover that takes it at that instant fail
// with a false "busy".
func TestReadingTheLockHolderNeverMakesATakerBusy(t *testing.T) {
	dir := t.TempDir()
	var stop atomic.Bool
	var readers sync.WaitGroup
	for i := 0; i < 2; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !stop.Load() {
				// Between the take and the holder's line, the lock is held by
				// "another process" (unnamed): true, if vague.
				if h := LockHolder(dir); h != "" && h != "pid 1: redeploy" && h != "another process" {
					t.Errorf("holder %q while only the test takes the lock", h)
				}
			}
		}()
	}
	defer func() { stop.Store(true); readers.Wait() }()
	for i := 0; i < 20000; i++ {
		l, err := AcquireLock(dir, "pid 1: redeploy")
		if errors.Is(err, ErrBusy) {
			t.Fatalf("take %d: %v: a reader of the holder made the lock look busy", i, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTheLockHolderIsNamedWhileHeldAndNobodyAfter(t *testing.T) {
	dir := t.TempDir()
	if h := LockHolder(dir); h != "" {
		t.Fatalf("holder %q before anyone took the lock", h)
	}
	l, err := AcquireLock(dir, "pid 7: rollout of app:v2")
	if err != nil {
		t.Fatal(err)
	}
	if h := LockHolder(dir); h != "pid 7: rollout of app:v2" {
		t.Fatalf("holder %q, want the rollout", h)
	}
	if _, err := AcquireLock(dir, "pid 8: redeploy"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second take: %v, want ErrBusy", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if h := LockHolder(dir); h != "" {
		t.Fatalf("holder %q after the release", h)
	}
}
