//go:build linux

package live

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/haroll/haroll/rollout"
)

// childEnv makes the test binary run TestLiveChildOnATerminal as the
// process under test.
const childEnv = "HAROLL_LIVE_TTY_CHILD"

// TestLiveChildOnATerminal is the process TestCtrlCOnTheTerminalStillInterruptsTheProcess
// starts on a pseudo-terminal: it draws the live view and waits for
// SIGINT the way `haroll` does (signal.NotifyContext), then closes the
// view and says so.
func TestLiveChildOnATerminal(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestCtrlCOnTheTerminalStillInterruptsTheProcess")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	l := Start(os.Stdout, "app:v2", []string{"a:7441", "b:7441"}, []string{"web"})
	l.Event(rollout.Event{Kind: rollout.EventBatchStart, Batch: 1, Batches: 1, Hosts: 2, Steps: 1})
	l.Event(rollout.Event{Kind: rollout.EventStepStart, Batch: 1, Batches: 1, Step: 1, Steps: 1, Slot: "web", Hosts: 2})
	fmt.Fprintln(l.Writer(), "child: waiting for Ctrl-C")
	select {
	case <-ctx.Done():
	case <-time.After(20 * time.Second):
		l.Close()
		fmt.Println("child: no SIGINT came")
		os.Exit(3)
	}
	if err := l.Close(); err != nil {
		fmt.Println("child: close:", err)
		os.Exit(4)
	}
	fmt.Println("child: interrupted, view closed")
	os.Exit(0)
}

// lockedBuffer collects a pty's output for the test to read meanwhile.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestCtrlCOnTheTerminalStillInterruptsTheProcess(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLiveChildOnATerminal$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", "TERM=xterm-256color")
	// The child leads a session whose controlling terminal is the pty.
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 100, Rows: 30})
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer tty.Close()
	var out lockedBuffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, tty) //nolint:errcheck // EIO once the child is gone
		close(copied)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() //nolint:errcheck
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "child: waiting for Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("the child never drew its view:\n%s", screen(t, out.String(), 100, 30, false))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The view is up: the terminal must still be in cooked mode, with
	// ISIG on, so that the line discipline turns Ctrl-C into SIGINT.
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ISIG == 0 || tio.Lflag&unix.ICANON == 0 {
		t.Errorf("the live view put the terminal in raw mode (lflag %#x)", tio.Lflag)
	}
	t.Logf("the view was up %s after the child started", time.Since(deadline.Add(-30*time.Second)))
	if _, err := tty.Write([]byte{0x03}); err != nil { // Ctrl-C, as typed
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the child: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Ctrl-C did not interrupt the child:\n%s", screen(t, out.String(), 100, 30, false))
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	got := screen(t, out.String(), 100, 30, false)
	// The terminal echoes the Ctrl-C as ^C where its cursor is, as it does
	// under any program: the view is drawn over it.
	t.Logf("the terminal shows:\n%s", got)
	at := 0
	for _, want := range []string{"child: waiting for Ctrl-C\n", "rollout of app:v2 · 2 hosts · finished in",
		"batches  0/1 done · batch 1/1 · 2 hosts\n", "hosts    0 done · 0 failed · 2 to go\n", "child: interrupted, view closed"} {
		i := strings.Index(got[at:], want)
		if i < 0 {
			t.Fatalf("the terminal shows:\n%s\nwant, in this order, the line printed above the view, the final view, then the child's last line; %q is missing", got, want)
		}
		at += i + len(want)
	}
}
