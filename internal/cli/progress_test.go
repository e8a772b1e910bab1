package cli

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/haroll/haroll/internal/live"
	"github.com/haroll/haroll/rollout"
)

func TestAnUnknownProgressModeIsAUsageError(t *testing.T) {
	_, err := runRollout(t, "--config", tenLoopbackHosts(t), "--image", "app:v2", "--progress", "fancy")
	if err == nil || !strings.Contains(err.Error(), `--progress "fancy": want auto, live or plain`) {
		t.Fatalf("got %v, want a usage error naming the modes", err)
	}
}

// sinkFor returns the progress sink `haroll rollout` picks with args, its
// stdout on out, for a rollout of app:v2 over hosts with slots.
func sinkFor(t *testing.T, out io.Writer, hosts, slots []string, args ...string) (progressSink, error) {
	t.Helper()
	c := &rolloutCmd{}
	cmd := newRollout()
	cmd.SetOut(out)
	cmd.SetErr(io.Discard)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	c.output, _ = cmd.Flags().GetString("output")
	c.progressMode, _ = cmd.Flags().GetString("progress")
	return c.progressSink(cmd, rolloutSpec{image: "app:v2", hosts: hosts, slots: slots})
}

func TestProgressIsPlainOffATerminalUnlessLiveIsAskedOnAFile(t *testing.T) {
	hosts, slots := []string{"a:7441"}, []string{"web"}
	var buf bytes.Buffer
	for _, mode := range []string{"auto", "plain"} {
		p, err := sinkFor(t, &buf, hosts, slots, "--progress", mode)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.(*live.Plain); !ok {
			t.Errorf("--progress %s to a buffer: %T, want plain lines", mode, p)
		}
		p.Close()
	}
	if _, err := sinkFor(t, &buf, hosts, slots, "--progress", "live"); err == nil {
		t.Error("--progress live to a buffer was accepted")
	}
	f, err := os.Create(t.TempDir() + "/progress")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := sinkFor(t, f, hosts, slots, "--progress", "live")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*live.Live); !ok {
		t.Errorf("--progress live to a file: %T, want the live view", p)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f.Name()); !strings.Contains(string(b), "rollout of app:v2 · 1 host · finished in") {
		t.Errorf("the file lacks the final view:\n%s", b)
	}
}

// ptyOutput collects what a pty's other end reads.
type ptyOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *ptyOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func TestLogLinesGoAboveTheLiveViewWhenStderrIsTheSameTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Cols: 120, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	var out ptyOutput
	go io.Copy(&out, ptmx) //nolint:errcheck // EIO once closed
	stderr := os.Stderr
	os.Stderr = tty
	t.Cleanup(func() { os.Stderr = stderr })
	before := logOutput.w
	log := slog.New(slog.NewTextHandler(logOutput, nil))

	p, err := sinkFor(t, tty, []string{"a:7441"}, []string{"web"}, "--progress", "auto")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*liveWithLogs); !ok {
		t.Fatalf("on a terminal: %T, want the live view with the logs above it", p)
	}
	p.Event(rollout.Event{Kind: rollout.EventBatchStart, Batch: 1, Batches: 1, Hosts: 1, Steps: 1})
	log.Warn("slot failed", "host", "a:7441")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if logOutput.w != before {
		t.Error("the log output was not given back to stderr")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "finished in") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := out.String()
	logAt, viewAt := strings.Index(got, `msg="slot failed" host=a:7441`), strings.LastIndex(got, "rollout of app:v2 · 1 host · finished in")
	if logAt < 0 || viewAt < 0 || logAt > viewAt {
		t.Errorf("want the log line above the final view; the terminal got:\n%q", got)
	}
}
