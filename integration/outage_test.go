package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
)

// TestAnHAProxyRestartDuringTheDrain restarts HAProxy (stop, then start:
// not a reload) while haroll drains slot 1 under load. The restart closes
// every connection and refuses new ones for a moment, with or without
// haroll; haroll must wait for HAProxy to come back, drain the slot again
// in the new process, and finish.
func TestAnHAProxyRestartDuringTheDrain(t *testing.T) {
	requireDeps(t)
	h := startHost(t, harness.FixedPorts)
	restart := func() {
		if err := h.HAProxy.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// What a restart costs by itself, with no haroll running.
	alone := underLoad(t, h, restart)
	var out string
	res := underLoad(t, h, func() {
		done := make(chan error, 1)
		go func() {
			var err error
			out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--log-level", "info")
			done <- err
		}()
		waitDrainStarts(t, h, 0)
		restart()
		if err := <-done; err != nil {
			t.Errorf("redeploy failed: %v", err)
		}
	})
	t.Logf("a restart alone failed %d requests; a restart during haroll's drain %d", alone.Lost(), res.Lost())
	// The restart's own failures are transport errors at the moment it
	// happens: connections closed or refused. A 5xx would mean a server got
	// traffic it could not serve.
	if n := failuresWhere(res, httpStatus); n != 0 || res.Dropped != 0 {
		t.Errorf("%d requests failed with an HTTP status: %s %v", n, res, res.Errors)
	}
	// The new process must be seen and the slot's changes re-applied in it.
	// The outage itself is met by the move into maintenance (retried), the
	// wait in it (waited out), or the reload guard's poll; or by none, when
	// the restart's hard stop had emptied the drained server in the old
	// process and the socket was back within a poll.
	if !strings.Contains(out, "haproxy was reloaded or restarted") {
		t.Error("haroll did not log the restart")
	}
	if !strings.Contains(out, "does not answer") && !containsAll(out, "watching for haproxy reloads", "unreachable") {
		t.Log("haroll did not meet the outage itself (it was over within a poll)")
	}
	if !slices.Equal(res.LastVersions, []string{"v2"}) {
		t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
	}
	assertServing(t, h, images.V2)
}

// shortDir is a directory whose path is short enough for a unix socket.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "hx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestHAProxyOrDockerNotAnsweringMidReplacement puts a switch in front of
// the agent's HAProxy socket or Docker socket and makes it vanish (a
// restart) or hang (a wedged process) while slot 1 drains, under load.
// haroll must never report a success it did not have, never leave the slot
// drained, and lose no request: an outage it can wait out is waited out;
// one longer than the step's limit fails the slot, and the rollback waits
// for the socket to answer again.
func TestHAProxyOrDockerNotAnsweringMidReplacement(t *testing.T) {
	requireDeps(t)
	for _, tc := range []struct {
		name    string
		docker  bool // else HAProxy's socket
		mode    harness.SwitchMode
		outage  time.Duration
		env     []string
		success bool
		want    string // in haroll's output
	}{
		// Gone for less than the drain's limit: waited out.
		// The outage meets the drain's move into maintenance (retried) or
		// its wait (waited out): both say HAProxy answers again.
		{name: "haproxy gone 2s", mode: harness.Gone, outage: 2 * time.Second, success: true,
			want: "answers again"},
		// Hanging for longer than the drain's limit: the slot fails.
		{name: "haproxy hanging 6s", mode: harness.Hang, outage: 6 * time.Second,
			env:  []string{"HAROLL_HAPROXY_TIMEOUT=500ms", "HAROLL_DRAIN_TIMEOUT=4s"},
			want: "haproxy has not answered for"},
		// Docker is not called while the slot drains: the stop after it fails.
		{name: "docker gone 6s", docker: true, mode: harness.Gone, outage: 6 * time.Second,
			want: "docker daemon unreachable"},
		{name: "docker hanging 6s", docker: true, mode: harness.Hang, outage: 6 * time.Second,
			env: []string{"HAROLL_DOCKER_TIMEOUT=1s"}, want: "docker call timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // a host and socket switch of its own: beside another case (main_test.go)
			h := startHost(t, harness.FixedPorts)
			dir := shortDir(t)
			target, env := h.HAProxy.Socket, "HAROLL_HAPROXY_SOCKET="
			if tc.docker {
				target, env = "/var/run/docker.sock", "HAROLL_DOCKER_HOST=unix://"
			}
			sw, err := harness.StartSocketSwitch(filepath.Join(dir, "s.sock"), target)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sw.Close() })
			before := takeSnapshot(t, h)
			var out string
			var rerr error
			res := underLoad(t, h, func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					out, rerr = redeployWithEnv(t, h, append(tc.env, env+sw.Path)...)
				}()
				waitDrainStarts(t, h, 0)
				// HAProxy applied the weight before haroll had its reply
				// through the switch: a hang at once may catch that reply
				// (the drain's first call then fails, not its wait; seen
				// once in CI). The drain lasts seconds under this load.
				time.Sleep(150 * time.Millisecond)
				if err := sw.Set(tc.mode); err != nil {
					t.Error(err)
				}
				time.Sleep(tc.outage)
				if err := sw.Set(harness.Pass); err != nil {
					t.Error(err)
				}
				<-done
			})
			assertNoLoss(t, res)
			if !strings.Contains(out, tc.want) {
				t.Errorf("haroll's output does not say %q", tc.want)
			}
			if tc.success {
				if rerr != nil {
					t.Fatalf("redeploy failed: %v", rerr)
				}
				assertSafe(t, h)
				return
			}
			if rerr == nil || !strings.Contains(out, "rolled_back") {
				t.Fatalf("redeploy: %v; want exit 1 with the slot rolled back", rerr)
			}
			after := takeSnapshot(t, h)
			if !slices.Equal(after.servers, before.servers) || !slices.Equal(after.containers, before.containers) {
				t.Errorf("the slot was not restored:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}
