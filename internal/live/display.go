package live

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/mattn/go-isatty"

	"github.com/haroll/haroll/rollout"
)

// The view's size when it is drawn on something other than a terminal
// (--progress live to a file), which has no size to ask.
const (
	fileWidth  = 120
	fileHeight = 60
)

// redrawEvery is how often the view is drawn again from a fresh snapshot:
// at most ten times a second, whatever the rate of events.
const redrawEvery = 100 * time.Millisecond

// Live draws a rollout's progress in place on a terminal, below whatever
// was printed before it, and leaves its last view printed when closed.
// Its Event only updates a Tracker, so it never waits for the terminal.
//
// It reads no input and leaves the terminal in its normal (cooked) mode:
// Ctrl-C still sends SIGINT to the process, which handles it as it would
// without the view. Bubble Tea's own signal handler is off for that
// reason.
type Live struct {
	t     *Tracker
	st    styles
	out   io.Writer
	lines *lineQueue
	p     *tea.Program
	done  chan struct{}
	err   error
	once  sync.Once
}

// Start draws the progress of a rollout of image over hosts with slots on
// out until Close. Nothing else should write to out meanwhile: Writer
// returns where other lines go, printed above the view.
func Start(out *os.File, image string, hosts, slots []string) *Live {
	return start(out, NewTracker(image, hosts, slots), newStyles(), redrawEvery)
}

func start(out io.Writer, t *Tracker, st styles, every time.Duration) *Live {
	l := &Live{t: t, st: st, out: out, lines: &lineQueue{}, done: make(chan struct{})}
	m := model{t: t, st: st, lines: l.lines, every: every}
	m.view = render(t.Snapshot(), st)
	opts := []tea.ProgramOption{
		tea.WithOutput(out),
		tea.WithInput(nil), // no raw mode and no terminal queries: Ctrl-C stays a signal
		tea.WithoutSignalHandler(),
	}
	if f, ok := out.(*os.File); !ok || !isatty.IsTerminal(f.Fd()) {
		opts = append(opts, tea.WithWindowSize(fileWidth, fileHeight))
	}
	l.p = tea.NewProgram(m, opts...)
	go func() {
		defer close(l.done)
		_, l.err = l.p.Run()
	}()
	return l
}

// Event updates the counters from e and returns at once; it is meant as
// rollout.Executor.Events.
func (l *Live) Event(e rollout.Event) { l.t.Event(e) }

// Writer returns a writer whose lines are printed above the view, in the
// order written, at its next redraw; writes never wait for the terminal.
func (l *Live) Writer() io.Writer { return l.lines }

// Close stops the redraws, prints the final view below the lines written
// through Writer, and returns once it is written, with the error that
// stopped the drawing or the writing, if any. It may be called more than
// once.
//
// The final view is printed as plain lines once Bubble Tea has let go of
// the terminal, starting from a carriage return, rather than drawn as a
// last frame: a Ctrl-C the terminal echoed as "^C" has moved the cursor
// behind the renderer's back, and a frame drawn with relative moves would
// come out shifted.
func (l *Live) Close() error {
	l.once.Do(func() {
		l.t.Finish()
		l.p.Send(finishMsg{})
		<-l.done
		// Lines the program did not print (it stopped early, or they came
		// during its last moments) go first.
		final := "\r"
		for _, line := range l.lines.take(true) {
			final += line + "\n"
		}
		final += render(l.t.Snapshot(), l.st)
		if _, err := lipgloss.Fprint(l.out, final); err != nil && l.err == nil {
			l.err = err
		}
	})
	return l.err
}

// model is the Bubble Tea model: the last view drawn, redrawn on every
// tick from a snapshot of the tracker.
type model struct {
	t     *Tracker
	st    styles
	lines *lineQueue
	every time.Duration
	view  string
}

type (
	tickMsg   struct{}
	finishMsg struct{}
)

func (m model) Init() tea.Cmd { return m.tick() }

func (m model) tick() tea.Cmd {
	return tea.Tick(m.every, func(time.Time) tea.Msg { return tickMsg{} })
}

func (m model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg.(type) {
	case tickMsg:
		m.view = render(m.t.Snapshot(), m.st)
		return m, tea.Sequence(home, m.print(false), m.tick())
	case finishMsg:
		m.view = "" // cleared: Close prints the final view itself
		return m, tea.Sequence(m.print(true), tea.Quit)
	}
	return m, nil
}

// home puts the cursor back at the start of its line below the view
// before a redraw: the terminal, in its normal mode, echoes a Ctrl-C (or
// any key) there as "^C" and moves the cursor, which the redraw's
// relative moves would otherwise be off by.
var home = tea.Raw("\r")

// View shows the cursor on the empty line below the view, where a shell
// would have it: what the terminal echoes itself (^C) lands there, not
// inside the view.
func (m model) View() tea.View {
	v := tea.NewView(m.view)
	v.Cursor = tea.NewCursor(0, strings.Count(m.view, "\n"))
	return v
}

// print prints the lines written since the last redraw above the view.
func (m model) print(final bool) tea.Cmd {
	lines := m.lines.take(final)
	if len(lines) == 0 {
		return nil
	}
	return tea.Println(strings.Join(lines, "\n"))
}

// lineQueue collects whole lines written to it until taken; a last line
// without its newline waits for the rest.
type lineQueue struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (q *lineQueue) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			q.partial = append(q.partial, p...)
			return n, nil
		}
		q.lines = append(q.lines, string(append(q.partial, p[:i]...)))
		q.partial, p = q.partial[:0], p[i+1:]
	}
}

// take returns the whole lines written so far and forgets them; with
// final, a last line still waiting for its newline too.
func (q *lineQueue) take(final bool) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	lines := q.lines
	if final && len(q.partial) > 0 {
		lines = append(lines, string(q.partial))
		q.partial = q.partial[:0]
	}
	q.lines = nil
	return lines
}
