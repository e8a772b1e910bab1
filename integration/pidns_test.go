package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
)

// These tests run HAProxy in a pid namespace of its own (`unshare --pid
// --fork`), as in a container: the worker pids it reports are its
// namespace's (the master is 1, the first worker 3) and name other
// processes on this host (kernel threads, which never exit). Its sockets are
// files on this host, as a container's bind-mounted ones.

// startPidNSHost starts a host whose HAProxy runs in its own pid namespace;
// with master, the agent is given its master CLI.
func startPidNSHost(t *testing.T, master bool) *harness.Host {
	t.Helper()
	if err := exec.Command("unshare", "--pid", "--fork", "true").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("unshare --pid --fork: %v (the test needs root)", err)
		}
		t.Skipf("unshare --pid --fork: %v (the test needs root)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := harness.StartHost(ctx, harness.HostOptions{
		Dir: t.TempDir(), Name: fmt.Sprintf("hpn%d", time.Now().UnixNano()%1e9), Image: images.V1,
		Weights: weights, Addressing: harness.FixedPorts, HealthTimeout: 10 * time.Second,
		DrainTimeout: 10 * time.Second, PidNamespace: true, MasterSocket: master,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	info, err := h.HAProxy.Info()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("haproxy's worker reports pid %s, in its own pid namespace", info["Pid"])
	return h
}

// TestAWorkerPidFromHAProxysOwnPidNamespaceDoesNotHoldTheDrain: without a
// master socket the agent cannot follow the old worker of an HAProxy in a
// container, and must not take its pid for a process here (here it is a
// kernel thread, which would hold the drain until drain.timeout). Preflight
// says that reload tracking is off, why, and what to set.
func TestAWorkerPidFromHAProxysOwnPidNamespaceDoesNotHoldTheDrain(t *testing.T) {
	requireDeps(t)
	h := startPidNSHost(t, false)
	// Slow requests keep s1's drain going until the reload, so that the
	// drain then asks whether the old worker is gone.
	for range 10 {
		go func() {
			resp, err := http.Get(h.URL("/slow?ms=4000"))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitSessions(t, h, 0)
	done := make(chan struct{})
	var out string
	var err error
	go func() {
		defer close(done)
		out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--slot", "app-1", "--log-level", "info")
	}()
	waitDrainStarts(t, h, 0)
	if err := h.HAProxy.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-done
	if err != nil {
		t.Fatalf("redeploy failed: %v", err)
	}
	if !containsAll(out, "reload tracking is off", "pid namespace", "haproxy.master_socket") {
		t.Error("preflight did not say that reload tracking is off, why, and what to set")
	}
}

// waitSessions waits until server i has a session.
func waitSessions(t *testing.T, h *harness.Host, i int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if stats, err := h.Servers(context.Background()); err == nil && stats[i].Scur > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server %d never had a session", i)
}

// TestAnHAProxyInItsOwnPidNamespaceIsFollowedThroughTheMasterCLI: with the
// master CLI the agent waits, after a reload during a drain, until `show
// proc` no longer lists the old worker, which still serves the 3-second
// requests it had: none of them may fail when the container is stopped.
func TestAnHAProxyInItsOwnPidNamespaceIsFollowedThroughTheMasterCLI(t *testing.T) {
	requireDeps(t)
	h := startPidNSHost(t, true)
	var out string
	reloads := 0
	var oldSeen [2]time.Time
	res := underLoad(t, h, func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			var err error
			out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--log-level", "info")
			if err != nil {
				t.Errorf("redeploy failed: %v", err)
			}
		}()
		for _, i := range []int{0, 1} {
			waitDrainStarts(t, h, i)
			if err := h.HAProxy.Reload(context.Background()); err != nil {
				t.Error(err)
			}
			reloads++
			oldSeen[i] = waitOldWorkersGone(t, h)
		}
		<-done
	})
	// As in TestAnHAProxyReloadDuringTheDrainLosesNothing: a reload itself
	// closes the old worker's idle keep-alive connections (EOF).
	eofs := failuresWhere(res, func(desc string) bool { return desc == "EOF" })
	if res.Failed+res.SlowFailed != eofs || eofs > int64(reloads) || res.Dropped != 0 {
		t.Errorf("lost requests beyond the reloads' own: %s %v", res, res.Errors)
	}
	if !slices.Equal(res.LastVersions, []string{"v2"}) {
		t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
	}
	assertServing(t, h, images.V2)
	if strings.Contains(out, "reload tracking is off") || !strings.Contains(out, "haproxy was reloaded or restarted") {
		t.Error("the agent did not follow the reloads through the master CLI")
	}
	checked := 0
	for i, seen := range oldSeen {
		slot := fmt.Sprintf("app-%d", i+1)
		end, reloaded := logTime(t, out, slot, "phase done", "drain"), logTime(t, out, slot, "haproxy was reloaded or restarted", "")
		t.Logf("%s: reload seen at %s, the old worker last listed by show proc at %s, the drain ended at %s", slot,
			reloaded.Format(time.StampMilli), seen.Format(time.StampMilli), end.Format(time.StampMilli))
		if seen.IsZero() || reloaded.After(end) {
			continue // the drain was over before the reload, or the old worker had nothing to finish
		}
		checked++
		if end.Before(seen) {
			t.Errorf("%s's drain ended while the old worker, still serving its sessions, was running", slot)
		}
	}
	if checked == 0 {
		t.Error("no reload came during a drain while the old worker still ran: the test proved nothing")
	}
}

// waitOldWorkersGone polls the master CLI until it lists no old worker, and
// returns the last time it saw one listed (zero if it never did): an old
// worker was still running then.
func waitOldWorkersGone(t *testing.T, h *harness.Host) (lastSeen time.Time) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		procs, err := h.HAProxy.ExecMaster("show proc")
		switch {
		case err != nil || !strings.Contains(procs, "master"):
		case !strings.Contains(procs, "# old workers"):
			return lastSeen
		default:
			lastSeen = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the old worker did not exit within 20s")
	return lastSeen
}

// logTime returns the time of the agent's first JSON log line with msg
// (a prefix) for slot, and phase when it is not "".
func logTime(t *testing.T, out, slot, msg, phase string) time.Time {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			Time  time.Time `json:"time"`
			Msg   string    `json:"msg"`
			Slot  string    `json:"slot"`
			Phase string    `json:"phase"`
		}
		if json.Unmarshal([]byte(strings.TrimSpace(line)), &e) == nil && strings.HasPrefix(e.Msg, msg) && e.Slot == slot && (phase == "" || e.Phase == phase) {
			return e.Time
		}
	}
	t.Fatalf("no %q %s of %s in the agent's log", msg, phase, slot)
	return time.Time{}
}
