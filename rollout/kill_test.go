package rollout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/haroll/haroll/agent/agentpb"
)

// The kill test: a coordinator of 1,000 in-memory agents, this test binary
// run again as a child, is killed with SIGKILL at random points and resumed
// until its rollout completes. No pair recorded is asked again, none is
// lost, and none is reported done before it is durable.

// Environment of the child coordinator.
const (
	killEnvMode   = "HAROLL_KILL_CHILD" // "run" or "resume"
	killEnvState  = "HAROLL_KILL_STATE"
	killEnvLedger = "HAROLL_KILL_LEDGER"
	killEnvRun    = "HAROLL_KILL_RUN" // the child's number, in the ledger
	killHosts     = 1000
	killBatch     = "35%"
)

var killSlots = []string{"a", "b", "c"}

// ledgerAgent is a fake agent without a network: it appends every Redeploy
// it receives to the ledger (before it answers), takes a small random
// time, and replaces the slot.
type ledgerAgent struct {
	host   string
	run    string
	ledger *os.File
}

func (a *ledgerAgent) Status(context.Context) (*agentpb.StatusResponse, error) {
	st := &agentpb.StatusResponse{AgentVersion: "test", Hostname: a.host}
	for _, s := range killSlots {
		st.Slots = append(st.Slots, &agentpb.SlotStatus{Slot: s, Image: "app:v1"})
	}
	return st, nil
}

func (a *ledgerAgent) Redeploy(ctx context.Context, req *agentpb.RedeployRequest, _ func(*agentpb.PhaseEvent)) (*agentpb.Report, error) {
	slot := req.GetSlots()[0]
	if _, err := fmt.Fprintf(a.ledger, "%s %s %s\n", a.host, slot, a.run); err != nil { // O_APPEND: one write, whole
		return nil, err
	}
	d := time.Duration(2+rand.IntN(18)) * time.Millisecond
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	return &agentpb.Report{Slots: []*agentpb.SlotReport{{Slot: slot, Result: ResultReplaced, OldImage: "app:v1", Total: durationpb.New(d)}}}, nil
}

func (a *ledgerAgent) Promote(context.Context, string) error { return nil }

func (a *ledgerAgent) Counters(context.Context, time.Duration, time.Duration, func(*agentpb.CountersSample)) error {
	return nil
}

// TestTheKillTestsChildCoordinator is the child: it runs (or resumes) the rollout
// and prints every EventSlotDone, one line each, as it is emitted. It does
// nothing unless the kill test started it.
func TestTheKillTestsChildCoordinator(t *testing.T) {
	mode := os.Getenv(killEnvMode)
	if mode == "" {
		t.Skip("the child of TestACoordinatorKilledAtRandomPointsLosesNoPairAndRedoesNone")
	}
	ledger, err := os.OpenFile(os.Getenv(killEnvLedger), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	run := os.Getenv(killEnvRun)
	// Compactions, so that kills fall in them too: after 256, 512, 1,024
	// and 2,048 pairs.
	setCompaction(t, 256)
	e := &Executor{Image: "app:v2", Origin: "kill test", StateFile: os.Getenv(killEnvState),
		Dial: func(_ context.Context, h string) (Agent, error) {
			return &ledgerAgent{host: h, run: run, ledger: ledger}, nil
		},
		Events: func(ev Event) {
			if ev.Kind == EventSlotDone { // os.Stdout is unbuffered: a write per line
				fmt.Fprintf(os.Stdout, "slot_done %s %s\n", ev.Host, ev.Slot)
			}
		}}
	fmt.Fprintln(os.Stdout, "started") // the parent's clock starts
	var res Result
	switch mode {
	case "run":
		res, err = e.Run(t.Context(), hostNames(killHosts), killSlots, mustStrategy(t, killBatch))
	case "resume":
		var st *State
		if st, err = LoadResumable(e.StateFile, ""); err == nil {
			res, err = e.Resume(t.Context(), st)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "state_writes count=%d total=%s max=%s records=%d snapshots=%d\n",
		res.StateWrites.Count, res.StateWrites.Total, res.StateWrites.Max, res.StateWrites.Records, res.StateWrites.Snapshots)
}

// killChild is one child coordinator as the parent sees it.
type killChild struct {
	cmd     *exec.Cmd
	out     []string      // its stdout lines
	started chan struct{} // closed once it is about to run or resume
	startAt time.Time
	endAt   time.Time // when it printed its result: the race detector's exit takes a second more
	done    chan struct{}
	err     error // its exit
}

func startKillChild(t *testing.T, dir, mode string, run int) *killChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTheKillTestsChildCoordinator$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnvMode+"="+mode, killEnvState+"="+filepath.Join(dir, "rollout.json"),
		killEnvLedger+"="+filepath.Join(dir, "ledger"), killEnvRun+"="+strconv.Itoa(run))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &killChild{cmd: cmd, started: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		started := false
		for sc.Scan() {
			c.out = append(c.out, sc.Text())
			if !started && sc.Text() == "started" {
				started, c.startAt = true, time.Now()
				close(c.started)
			}
			if strings.HasPrefix(sc.Text(), "state_writes ") {
				c.endAt = time.Now()
			}
		}
		if !started {
			close(c.started)
		}
	})
	go func() {
		wg.Wait() // every line read before Wait closes the pipe
		c.err = cmd.Wait()
		if c.err != nil && stderr.Len() > 0 {
			c.err = fmt.Errorf("%w: %s", c.err, stderr.String())
		}
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

// killAfter kills c with SIGKILL d after it started its rollout, unless
// it ended first, and waits for it. It reports whether the kill came first.
func (c *killChild) killAfter(t *testing.T, d time.Duration) bool {
	t.Helper()
	<-c.started
	select {
	case <-c.done:
		return false
	case <-time.After(d):
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	<-c.done
	return true
}

// printed are the pairs the child reported done.
func (c *killChild) printed() []string {
	var pairs []string
	for _, l := range c.out {
		if p, ok := strings.CutPrefix(l, "slot_done "); ok {
			pairs = append(pairs, p)
		}
	}
	return pairs
}

func (c *killChild) writes() string {
	for _, l := range c.out {
		if w, ok := strings.CutPrefix(l, "state_writes "); ok {
			return w
		}
	}
	return ""
}

// recorded are the pairs ("host slot") the state at dir records, and the
// state; none before the first write.
func recorded(t *testing.T, dir string) (map[string]bool, *State) {
	t.Helper()
	st, err := ReadState(filepath.Join(dir, "rollout.json"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil // killed before its first write
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(map[string]bool, len(st.Done))
	for _, p := range st.Done {
		done[p.Host+" "+p.Slot] = true
	}
	return done, st
}

// asked are the pairs the ledger at dir says child run was asked.
func asked(t *testing.T, dir string, run int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ledger"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) == 3 && f[2] == strconv.Itoa(run) {
			out = append(out, f[0]+" "+f[1])
		}
	}
	return out
}

func TestACoordinatorKilledAtRandomPointsLosesNoPairAndRedoesNone(t *testing.T) {
	if os.Getenv(killEnvMode) != "" {
		t.Skip("in the child")
	}
	t0 := time.Now()
	// How long a rollout takes here, from the child's start of it.
	c := startKillChild(t, t.TempDir(), "run", 0)
	<-c.done
	if c.err != nil {
		t.Fatal(c.err)
	}
	whole := c.endAt.Sub(c.startAt)
	t.Logf("a whole rollout of %d hosts x %d slots in a child: %s (%s)", killHosts, len(killSlots), whole.Round(time.Millisecond), c.writes())

	rng := rand.New(rand.NewPCG(13, 2))
	const runs = 5
	for i := range runs {
		dir := t.TempDir()
		var kills []string
		for run := 1; ; run++ {
			before, st := recorded(t, dir)
			mode := "resume"
			if st == nil { // none yet, or killed before it wrote its first
				mode = "run"
			}
			c := startKillChild(t, dir, mode, run)
			// Kill each of the first two children at a random point of a
			// whole rollout's time; let the third finish.
			killed := false
			if run <= 2 {
				at := time.Duration(float64(whole) * (0.1 + 0.8*rng.Float64()))
				if killed = c.killAfter(t, at); killed {
					kills = append(kills, at.Round(time.Millisecond).String())
				}
			} else {
				<-c.done
			}
			if !killed && c.err != nil {
				t.Fatalf("run %d child %d: %v\n%s", i+1, run, c.err, strings.Join(c.out[max(0, len(c.out)-20):], "\n"))
			}
			after, st := recorded(t, dir)
			for _, p := range c.printed() {
				if !after[p] {
					t.Errorf("run %d child %d: %s was reported done but is not in the state file", i+1, run, p)
				}
			}
			for _, p := range asked(t, dir, run) {
				if before[p] {
					t.Errorf("run %d child %d: %s was asked again though it was recorded", i+1, run, p)
				}
			}
			if killed && (st == nil || !st.Complete) {
				t.Logf("run %d child %d killed at %s: %d pairs printed, %d recorded", i+1, run, kills[len(kills)-1], len(c.printed()), len(after))
				continue
			}
			// The end: complete, every planned pair recorded once, and run.
			if st == nil || !st.Complete || st.Outcome != HostDone {
				t.Fatalf("run %d: the rollout did not complete: %+v", i+1, st)
			}
			if len(after) != st.Pairs() || st.Pairs() != killHosts*len(killSlots) {
				t.Errorf("run %d: %d pairs recorded of %d", i+1, len(after), st.Pairs())
			}
			ran := map[string]bool{}
			for r := 1; r <= run; r++ {
				for _, p := range asked(t, dir, r) {
					ran[p] = true
				}
			}
			for p := range after {
				if !ran[p] {
					t.Errorf("run %d: %s is recorded but no agent was asked", i+1, p)
				}
			}
			t.Logf("run %d: killed at %s, completed by child %d (%s)", i+1, strings.Join(kills, ", "), run, c.writes())
			break
		}
	}
	t.Logf("the kill test took %s", time.Since(t0).Round(time.Millisecond))
}
