package sdnotify_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/sdnotify"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runWatchdog starts Watchdog with WATCHDOG_USEC=interval for this process
// and returns stop, which ends it and returns what it returned (stop is also
// called at cleanup).
func runWatchdog(t *testing.T, interval time.Duration, check func(context.Context) error) (stop func() error) {
	t.Helper()
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(interval.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sdnotify.Watchdog(ctx, check, quiet) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("Watchdog did not return within 5s of its context's end")
		}
	})
	t.Cleanup(func() { stop() })
	return stop
}

// silent fails the test when a datagram arrives within d.
func silent(t *testing.T, conn *net.UnixConn, d time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("got %q, want nothing for %s", buf[:n], d)
	}
}

func TestTheWatchdogIsPingedAtHalfTheIntervalWhileTheCheckPasses(t *testing.T) {
	conn := listen(t, socketPath(t))
	var checks atomic.Int32
	runWatchdog(t, 400*time.Millisecond, func(ctx context.Context) error {
		checks.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the check has no deadline")
		}
		return nil
	})
	start := time.Now()
	for i := 0; i < 3; i++ {
		if got := receive(t, conn); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q, want WATCHDOG=1", i, got)
		}
	}
	// The first ping is sent at once, the next two 200ms apart.
	if el := time.Since(start); el < 300*time.Millisecond || el > 2*time.Second {
		t.Errorf("3 pings took %s, want about 400ms", el)
	}
	if checks.Load() < 3 {
		t.Errorf("%d checks for 3 pings", checks.Load())
	}
}

func TestNoPingIsSentWhileTheCheckFailsAndPingsResumeAfter(t *testing.T) {
	conn := listen(t, socketPath(t))
	var sick atomic.Bool
	runWatchdog(t, 200*time.Millisecond, func(context.Context) error {
		if sick.Load() {
			return errors.New("agent socket does not answer")
		}
		return nil
	})
	if got := receive(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	sick.Store(true)
	// A ping already in flight may still arrive; after it, none.
	conn.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	conn.Read(make([]byte, 64))
	silent(t, conn, 600*time.Millisecond)
	sick.Store(false)
	if got := receive(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("after recovery: got %q", got)
	}
}

func TestWithoutAWatchdogForThisProcessWatchdogReturnsAtOnce(t *testing.T) {
	conn := listen(t, socketPath(t))
	never := func(context.Context) error { t.Error("check called"); return nil }
	for name, pid := range map[string]string{"no WATCHDOG_USEC": "", "WATCHDOG_PID of another process": strconv.Itoa(os.Getpid() + 1)} {
		t.Run(name, func(t *testing.T) {
			if pid == "" {
				t.Setenv("WATCHDOG_USEC", "")
			} else {
				t.Setenv("WATCHDOG_USEC", "1000000")
			}
			t.Setenv("WATCHDOG_PID", pid)
			if err := sdnotify.Watchdog(context.Background(), never, quiet); err != nil {
				t.Fatal(err)
			}
		})
	}
	silent(t, conn, 50*time.Millisecond)
}

func TestAMalformedWatchdogIntervalIsAnError(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "thirty")
	t.Setenv("WATCHDOG_PID", "")
	err := sdnotify.Watchdog(context.Background(), func(context.Context) error { return nil }, quiet)
	if err == nil {
		t.Fatal("no error")
	}
}

func TestTheWatchdogStopsWhenItsContextEnds(t *testing.T) {
	listen(t, socketPath(t))
	stop := runWatchdog(t, time.Hour, func(context.Context) error { return nil })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
