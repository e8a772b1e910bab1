package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/internal/tlsconf"
	"github.com/haroll/haroll/rollout"
)

// coordinatorConfig copies the fleet's coordinator config with agent
// addresses replaced as via says (old -> new); it returns its path and the
// state file it names.
func coordinatorConfig(t *testing.T, f *harness.Fleet, via map[string]string) (config, state string) {
	t.Helper()
	b, err := os.ReadFile(f.CoordinatorYAML)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for from, to := range via {
		if !strings.Contains(body, from) {
			t.Fatalf("%s does not list %s", f.CoordinatorYAML, from)
		}
		body = strings.ReplaceAll(body, from, to)
	}
	config = filepath.Join(t.TempDir(), "coordinator.yaml")
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return config, f.StateFile
}

// watched is a `haroll` process whose output is read line by line.
type watched struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	line chan string // every line, for whoever waits on one; never blocks
	done chan struct{}
	err  error
}

func startHaroll(t *testing.T, args ...string) *watched {
	t.Helper()
	w := &watched{cmd: exec.Command(harollBin, args...), line: make(chan string, 4096), done: make(chan struct{})}
	pr, pw := io.Pipe()
	w.cmd.Stdout, w.cmd.Stderr = pw, pw
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			w.mu.Lock()
			w.out.WriteString(sc.Text() + "\n")
			w.mu.Unlock()
			select {
			case w.line <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		w.err = w.cmd.Wait()
		pw.Close()
		close(w.done)
	}()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.done
	})
	return w
}

// waitLine returns the first line matching re, or fails the test.
func (w *watched) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-w.line:
			if re.MatchString(l) {
				return l
			}
		case <-w.done:
			t.Fatalf("haroll exited (%v) before printing %q:\n%s", w.err, re, w.output())
		case <-deadline:
			t.Fatalf("no line %q within %s:\n%s", re, timeout, w.output())
		}
	}
}

// wait waits for the process to exit and returns its error.
func (w *watched) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-w.done:
		time.Sleep(50 * time.Millisecond) // the last lines through the pipe
		return w.err
	case <-time.After(timeout):
		t.Fatalf("haroll still runs after %s:\n%s", timeout, w.output())
		return nil
	}
}

func (w *watched) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// slotDone matches a progress line saying a slot ended on a host.
var slotDone = regexp.MustCompile(`^batch \d+/\d+ step \d+/\d+ (\S+)\s+(\S+)\s+(replaced|skipped|rolled_back|failed|error)\s`)

// donePairs lists the "host slot" pairs that out says ended.
func donePairs(out string) []string {
	var pairs []string
	for _, l := range strings.Split(out, "\n") {
		if m := slotDone.FindStringSubmatch(l); m != nil {
			pairs = append(pairs, m[2]+" "+m[1])
		}
	}
	return pairs
}

// agentStatus asks agent i of f its status directly (not through a proxy).
func agentStatus(f *harness.Fleet, i int) (*agentpb.StatusResponse, error) {
	cfg, err := tlsconf.Client(filepath.Join(f.PKI, "coordinator.crt"), filepath.Join(f.PKI, "coordinator.key"), filepath.Join(f.PKI, "ca.crt"))
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(f.Agents[i].Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return agentpb.NewAgentClient(conn).Status(ctx, &agentpb.StatusRequest{})
}

// waitIdle waits until agent i is not busy and returns how long it took.
func waitIdle(t *testing.T, f *harness.Fleet, i int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		st, err := agentStatus(f, i)
		if err == nil && st.GetBusy() == "" {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("agent %d still busy after %s: %v %v", i+1, timeout, st.GetBusy(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logHAProxyTrouble, when the test failed, logs every HAProxy log line of
// the fleet that shows a failed request or a server state change, before the
// fleet (and its logs) go away.
func logHAProxyTrouble(t *testing.T, f *harness.Fleet) {
	t.Helper()
	trouble := regexp.MustCompile(` 50[0-9] |is DOWN|is UP|NOSRV|<NOSRV>| -1/| [sSCc][CDHQRT]-- `)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, h := range f.Hosts {
			b, err := os.ReadFile(h.HAProxy.LogPath)
			if err != nil {
				t.Logf("host %d haproxy log: %v", i+1, err)
				continue
			}
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if trouble.MatchString(l) {
					lines = append(lines, l)
				}
			}
			t.Logf("host %d haproxy, requests failed and state changes:\n%s", i+1, strings.Join(lines, "\n"))
		}
	})
}

// The fleet tests have short names: t.TempDir() holds HAProxy's unix
// sockets, whose paths must stay under 98 bytes.

// After a SIGKILL with a slot in flight, --resume waits for the agent that
// carries on alone, finishes the rollout without redoing a finished (host,
// slot) pair, and loses no request.
func TestResumeAfterTheCoordinatorIsKilled(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	f := startFleet(t)
	logHAProxyTrouble(t, f)
	config, state := coordinatorConfig(t, f, nil)
	stopLoad := loadFleet(f)
	time.Sleep(500 * time.Millisecond)

	first := startHaroll(t, "rollout", "--config", config, "--image", images.V2, "--batch", "35%")
	end := first.waitLine(t, regexp.MustCompile(`^batch 1/\d+ step 1/\d+ \S+\s+end: `), 2*time.Minute)
	// Kill it with the second slot in flight on host 1: its agent goes on
	// alone, and the resume must wait for it, then ask that slot again.
	waitHostOut(t, f.Hosts[0])
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	_ = first.wait(t, 10*time.Second)
	t.Logf("haroll rollout, killed after %q:\n%s", end, first.output())

	st, err := rollout.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, p := range st.Done {
		recorded = append(recorded, p.Host+" "+p.Slot)
	}
	t.Logf("recorded when killed: %v", recorded)
	if st.Complete || len(st.Done) < 2 {
		t.Fatalf("state complete %v with %d pairs: want the first step (2 pairs) recorded and the rollout unfinished", st.Complete, len(st.Done))
	}
	for _, p := range donePairs(first.output()) {
		if !slices.Contains(recorded, p) {
			t.Errorf("%s was printed as done but is not in the state file", p)
		}
	}

	out, err := haroll(t, "rollout", "--config", config, "--resume")
	t.Logf("resume ended %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	results := stopLoad()
	if err != nil {
		t.Fatalf("the resumed rollout failed: %v", err)
	}
	assertFleetLoad(t, results, "v2")
	for _, h := range f.Hosts {
		assertServing(t, h, images.V2)
	}
	if !strings.Contains(out, "waiting "+f.Agents[0].Addr) {
		t.Error("the resume did not wait for host 1, killed with a slot in flight")
	}
	resumed := donePairs(out)
	for _, p := range resumed {
		if slices.Contains(recorded, p) {
			t.Errorf("the resume redid %s, finished before the kill", p)
		}
	}
	if want := st.Pairs() - len(st.Done); len(resumed) != want {
		t.Errorf("the resume reported %d pairs %v, want the %d not recorded", len(resumed), resumed, want)
	}
	if !strings.Contains(out, fmt.Sprintf("%d of %d (host, slot) pair(s) finished", len(st.Done), st.Pairs())) {
		t.Error("the resume does not say how far the first run got")
	}
	again, err := haroll(t, "rollout", "--config", config, "--resume")
	if err == nil || !strings.Contains(again, "is complete") {
		t.Errorf("resuming a finished rollout: err %v, want a refusal saying it is complete", err)
	}
}

// A network cut between the coordinator and one agent mid-step fails that
// host, stops the rollout (max_failures 0), loses no request, and the agent
// finishes or rolls back its slot on its own.
func TestNetworkCutMidStepFailsItsHostSafely(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	f := startFleet(t)
	logHAProxyTrouble(t, f)
	proxy, err := harness.StartProxy(f.Agents[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	config, state := coordinatorConfig(t, f, map[string]string{f.Agents[0].Addr: proxy.Addr()})
	before := snapshotFleet(t, f)
	stopLoad := loadFleet(f)
	time.Sleep(500 * time.Millisecond)

	w := startHaroll(t, "rollout", "--config", config, "--image", images.V2, "--batch", "35%", "--step-timeout", "30s")
	waitHostOut(t, f.Hosts[0])
	proxy.Cut()
	cutAt := time.Now()
	if c, err := net.DialTimeout("tcp", proxy.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the cut proxy still accepts connections")
	}
	rolloutErr := w.wait(t, 3*time.Minute)
	t.Logf("haroll rollout (exit %v, %s after the cut):\n%s", rolloutErr, time.Since(cutAt).Round(time.Millisecond), w.output())
	idle := waitIdle(t, f, 0, 2*time.Minute)
	t.Logf("agent 1 idle %s after the rollout ended", idle.Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	results := stopLoad()

	var exit *exec.ExitError
	if !errors.As(rolloutErr, &exit) {
		t.Errorf("the rollout exited %v, want a non-zero exit", rolloutErr)
	}
	out := w.output()
	hostLine := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(proxy.Addr()) + `\s+1\s+failed\s`)
	if !hostLine.MatchString(out) {
		t.Error("the final table does not show host 1 failed")
	}
	if !strings.Contains(out, "more than max_failures 0") {
		t.Error("the rollout does not say the failure policy stopped it")
	}
	assertFleetLoad(t, results, "")
	assertSafe(t, f.Hosts[0])
	assertServing(t, f.Hosts[1], images.V2)
	after := snapshotFleet(t, f)
	for i := 2; i < len(f.Hosts); i++ {
		assertSafe(t, f.Hosts[i])
		if !slices.Equal(after[i], before[i]) {
			t.Errorf("host %d is in the second batch but was touched", i+1)
		}
	}
	h1, err := f.Hosts[0].Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host 1 runs %v after the cut", h1)
	st, err := rollout.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Complete || st.Outcome != rollout.HostFailed {
		t.Errorf("state complete %v outcome %q: a rollout stopped by its failure policy is complete, failed", st.Complete, st.Outcome)
	}
}

func TestNetworkCutProxyClosesAndRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := harness.StartProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || l != "ping\n" {
		t.Fatalf("echo through the proxy: %q, %v", l, err)
	}
	p.Cut()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection through the proxy survived the cut")
	}
	if c2, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c2.Close()
		t.Error("the cut proxy accepted a new connection")
	}
}
