package live

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/haroll/haroll/rollout"
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
	r := lipgloss.NewRenderer(out)
	// Said, so that lipgloss never asks the terminal (an OSC 11 query whose
	// answer it waits up to 5 s for, on the input the view leaves alone);
	// the view uses no colour that depends on it.
	r.SetHasDarkBackground(true)
	return start(out, NewTracker(image, hosts, slots), newStyles(r), redrawEvery)
}

func start(out io.Writer, t *Tracker, st styles, every time.Duration) *Live {
	l := &Live{t: t, lines: &lineQueue{}, done: make(chan struct{})}
	m := model{t: t, st: st, lines: l.lines, every: every}
	m.view = render(t.Snapshot(), st)
	l.p = tea.NewProgram(m,
		tea.WithOutput(out),
		tea.WithInput(nil), // no raw mode: Ctrl-C stays a signal
		tea.WithoutSignalHandler(),
		tea.WithoutBracketedPaste(),
	)
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

// Close draws the final view, leaves it printed and returns once the
// terminal has it, with the error that stopped the drawing, if any. It may
// be called more than once.
func (l *Live) Close() error {
	l.once.Do(func() {
		l.t.Finish()
		l.p.Send(finishMsg{})
		<-l.done
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
		return m, tea.Batch(m.print(false), m.tick())
	case finishMsg:
		m.view = render(m.t.Snapshot(), m.st)
		return m, tea.Sequence(m.print(true), tea.Quit)
	}
	return m, nil
}

func (m model) View() string { return m.view }

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
