package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
)

// killPoint is where a replacement is cut off with SIGKILL: when HAProxy
// shows the server drained, or right after haroll reports a phase done.
type killPoint struct {
	name  string
	after string // phase whose progress line triggers the kill; "" = on weight 0
}

var killPoints = []killPoint{
	{"draining", ""},
	{"old stopped", "stop"},
	{"new started", "start"},
	{"health gate", "boot"},
}

// TestSIGKILLInEachPhaseLeavesEverySlotServing kills the agent daemon, and
// the in-process `haroll redeploy`, in each phase of a replacement under
// load, restarts it, and checks the host: every server UP at its original
// weight, one running container per slot, nothing left over.
func TestSIGKILLInEachPhaseLeavesEverySlotServing(t *testing.T) {
	requireDeps(t)
	for _, mode := range []string{"daemon", "in-process"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel() // a host and agent of its own: beside the other (main_test.go)
			h := startHost(t, harness.FixedPorts)
			var agentProc *harness.AgentProcess
			startAgent := func() {
				t.Helper()
				a, err := harness.StartAgent(context.Background(), harollBin, h, "")
				if err != nil {
					t.Fatal(err)
				}
				agentProc = a
			}
			if mode == "daemon" {
				startAgent()
				t.Cleanup(func() { agentProc.Stop() })
			}
			image := images.V2
			for _, kp := range killPoints {
				t.Run(kp.name, func(t *testing.T) {
					stopLoad := loadgen.Start(context.Background(), loadgen.Options{
						URL: h.URL("/"), Rate: 150, SlowURL: h.URL("/slow?ms=3000"), SlowEvery: 500 * time.Millisecond,
					})
					time.Sleep(300 * time.Millisecond)
					victim := func(cli *exec.Cmd) *os.Process {
						if mode == "daemon" {
							return agentProc.Cmd.Process
						}
						return cli.Process
					}
					killed := redeployAndKill(t, h, image, kp, victim)
					if mode == "daemon" {
						<-waitExit(agentProc)
						startAgent() // recovers before it serves
					} else {
						out, err := haroll(t, "recover", "--config", h.AgentYAML)
						if err != nil || !strings.Contains(out, "slot app-1") {
							t.Errorf("recover: %v", err)
						}
					}
					if err := h.WaitAllUp(context.Background()); err != nil {
						t.Error(err)
					}
					time.Sleep(time.Second)
					res := stopLoad()
					t.Logf("killed %s (%s) in phase %q: load %s", mode, killed, kp.name, res)
					if res.Failed != 0 || res.SlowFailed != 0 || res.Dropped != 0 {
						t.Errorf("lost requests: %s %v", res, res.Errors)
					}
					assertConsistent(t, h)
					if image == images.V2 {
						image = images.V1
					} else {
						image = images.V2
					}
				})
			}
		})
	}
}

// startRedeploy starts `haroll redeploy` with args and returns it with its
// output (stdout and stderr) line by line; the caller waits for it.
func startRedeploy(t *testing.T, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cli := exec.Command(harollBin, append([]string{"redeploy"}, args...)...)
	stdout, err := cli.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cli.Stderr = cli.Stdout
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cli, lines
}

// sigkill SIGKILLs p, reads the rest of lines away, and says what it killed.
func sigkill(p *os.Process, lines <-chan string) string {
	_ = p.Signal(syscall.SIGKILL)
	go func() {
		for range lines {
		}
	}()
	return "pid " + itoaPid(p.Pid)
}

// redeployAndKill runs `haroll redeploy --slot app-1 --force` and SIGKILLs
// victim at kp. It returns what it killed.
func redeployAndKill(t *testing.T, h *harness.Host, image string, kp killPoint, victim func(*exec.Cmd) *os.Process) string {
	t.Helper()
	cli, lines := startRedeploy(t, "--config", h.AgentYAML, "--image", image, "--slot", "app-1", "--force")
	defer cli.Wait()
	return killAt(t, cli, lines, kp.name, kp.after, func() bool {
		stats, err := h.Servers(context.Background())
		return err == nil && stats[0].Weight == 0
	}, victim)
}

// killAt SIGKILLs victim once the redeploy cli prints app-1's line for the
// phase after or, with after empty, once reached (asked every 10 ms) says
// so; it fails t when neither comes within a minute. It returns what it
// killed.
func killAt(t *testing.T, cli *exec.Cmd, lines <-chan string, name, after string, reached func() bool, victim func(*exec.Cmd) *os.Process) string {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("redeploy ended before the kill point %q", name)
			}
			t.Log(line)
			if f := strings.Fields(line); after != "" && len(f) > 1 && f[0] == "app-1" && f[1] == after {
				return sigkill(victim(cli), lines)
			}
		case <-tick.C:
			if after == "" && reached() {
				return sigkill(victim(cli), lines)
			}
		case <-deadline:
			t.Fatalf("kill point %q never came", name)
		}
	}
}

func itoaPid(pid int) string { return strconv.Itoa(pid) }

// assertConsistent checks the host after a recovery: every server fully UP
// at its original weight and pointing at its slot's container, which runs;
// no other container; no journal.
func assertConsistent(t *testing.T, h *harness.Host) {
	t.Helper()
	stats := assertSafe(t, h)
	addrs, err := h.Addrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stats {
		if s.Addr != addrs[i] {
			t.Errorf("%s points at %s, its container is at %s", s.Server, s.Addr, addrs[i])
		}
	}
	if _, err := os.Stat(filepath.Join(h.Opts.Dir, "state", "journal.json")); err == nil {
		t.Error("the journal is still there after recovery")
	}
}

func waitExit(a *harness.AgentProcess) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		for !a.Exited() {
			time.Sleep(10 * time.Millisecond)
		}
		close(c)
	}()
	return c
}
