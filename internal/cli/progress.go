package cli

import (
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/haroll/haroll/internal/live"
	"github.com/haroll/haroll/rollout"
)

// Values of --progress.
const (
	progressAuto  = "auto"  // live on a terminal with --output text, plain otherwise
	progressLive  = "live"  // the live view, redrawn in place
	progressPlain = "plain" // one line per event (rollout.Progress's format)
)

// progressSink is where a rollout's progress goes: Event is the
// Executor's Events, Writer takes the notes printed before and between
// events (in order with them), Close writes what is left and must return
// before the final result is written.
type progressSink interface {
	Event(rollout.Event)
	Writer() io.Writer
	Close() error
}

// progressSink picks where the progress of spec goes, as --progress and
// --output say: the live view with --progress live, or auto with text
// output on a terminal; else the plain lines. It goes where c.progress
// says (stdout with text output, stderr with JSON). While the live view is
// drawn on a terminal that is also stderr, log lines are printed above it
// instead of through it.
func (c *rolloutCmd) progressSink(cmd *cobra.Command, spec rolloutSpec) (progressSink, error) {
	w := c.progress(cmd)
	f, isFile := w.(*os.File)
	tty := isFile && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
	switch c.progressMode {
	case progressPlain:
		return live.NewPlain(w, spec.hosts, spec.slots), nil
	case progressAuto:
		if !tty || c.output != "text" {
			return live.NewPlain(w, spec.hosts, spec.slots), nil
		}
	case progressLive:
		if !isFile {
			return nil, usageError("--progress live: the progress does not go to a file or a terminal here")
		}
	default:
		return nil, usageError("--progress %q: want auto, live or plain", c.progressMode)
	}
	l := live.Start(f, spec.image, spec.hosts, spec.slots)
	if !tty || !sameTerminal(f, os.Stderr) {
		return l, nil
	}
	restore := logOutput.swap(l.Writer())
	return &liveWithLogs{Live: l, restore: restore}, nil
}

// liveWithLogs gives the log lines back to stderr once the view is closed.
type liveWithLogs struct {
	*live.Live
	restore func()
}

func (l *liveWithLogs) Close() error {
	err := l.Live.Close()
	l.restore()
	return err
}

// sameTerminal reports whether a and b are the same terminal device.
func sameTerminal(a, b *os.File) bool {
	sa, err := a.Stat()
	if err != nil {
		return false
	}
	sb, err := b.Stat()
	return err == nil && os.SameFile(sa, sb)
}

// closeProgress closes p, logging (not returning) an error writing the
// progress: the rollout's own result matters more.
func closeProgress(p progressSink) {
	if err := p.Close(); err != nil {
		slog.Warn("writing the progress failed; the result follows", "error", err)
	}
}

// logOutput is where slog's lines go (see setupLogging): stderr, or above
// the live view while one is drawn on that terminal.
var logOutput = &switchWriter{w: os.Stderr}

// switchWriter writes to a writer that can be swapped while in use.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// swap makes w the destination and returns the function that puts the
// previous one back.
func (s *switchWriter) swap(w io.Writer) (restore func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.w
	s.w = w
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.w = old
	}
}
