package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/integration/harness"
)

// stalledRegistry starts a registry on 127.0.0.1 that the real engine pulls
// from and that stops sending the image's layer half-way; it returns the
// image's reference.
func stalledRegistry(t *testing.T) (*harness.Registry, string) {
	t.Helper()
	reg, err := harness.StartRegistry(true)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref(fmt.Sprintf("haroll-it-stall%d/app:1", time.Now().UnixNano()%1e9))
	t.Cleanup(func() {
		reg.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = harness.RemoveImage(ctx, ref) // none, unless a pull wrongly finished
	})
	return reg, ref
}

// assertLockFree fails when someone holds h's host lock.
func assertLockFree(t *testing.T, h *harness.Host) {
	t.Helper()
	if holder := agent.LockHolder(filepath.Join(h.Opts.Dir, "state")); holder != "" {
		t.Errorf("the host lock is still held: %s", holder)
	}
}

func TestAStalledImagePullEndsAtPullTimeoutAndChangesNothing(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	reg, ref := stalledRegistry(t)
	if err := h.AppendAgentConfig("docker:\n  pull_timeout: 7s\n"); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, h)
	var (
		out  string
		err  error
		took time.Duration
	)
	res := underLoad(t, h, func() {
		begin := time.Now()
		out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", ref)
		took = time.Since(begin)
	})
	if err == nil {
		t.Fatal("haroll redeploy exited 0 with an image it could not pull")
	}
	if reg.LayerRequests() == 0 {
		t.Fatal("the engine never asked the registry for the layer: the pull did not run")
	}
	t.Logf("haroll redeploy ended after %s", took.Round(time.Millisecond))
	size := strings.TrimPrefix(docker.PullProgress{Size: reg.LayerSize, Layers: 1}.String(), "0 B")
	for _, want := range []string{"pulling " + ref + ": ", size, "image pull timed out after 7s", "docker.pull_timeout", "nothing was changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	if took > 7*time.Second+30*time.Second {
		t.Errorf("haroll redeploy took %s with pull_timeout 7s", took)
	}
	assertBackOnV1(t, h, before, res)
	assertLockFree(t, h)
}

func TestAnInterruptedRedeployStopsItsPullAtOnceAndFreesTheHost(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	reg, ref := stalledRegistry(t)
	before := takeSnapshot(t, h)
	w := startHaroll(t, "redeploy", "--config", h.AgentYAML, "--image", ref)
	select {
	case <-reg.LayerRequested():
	case <-w.done:
		t.Fatalf("haroll redeploy ended before the pull stalled:\n%s", w.output())
	case <-time.After(90 * time.Second):
		t.Fatalf("the engine did not ask for the layer in 90s:\n%s", w.output())
	}
	if err := w.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err := w.wait(t, 10*time.Second)
	t.Logf("haroll redeploy ended %s after SIGINT (%v):\n%s", time.Since(begin).Round(time.Millisecond), err, w.output())
	if err == nil {
		t.Fatal("exit 0 for an interrupted redeploy")
	}
	for _, want := range []string{"image pull cancelled", "interrupted", "nothing was changed"} {
		if !strings.Contains(w.output(), want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	if after := takeSnapshot(t, h); !slices.Equal(after.containers, before.containers) {
		t.Errorf("containers changed: %v -> %v", before.containers, after.containers)
	}
	assertSafe(t, h)
	assertLockFree(t, h)
}

// The coordinator's step timeout ends its call, and so does its death; the
// agent, whose pull_timeout (the default 10m) is far off, stops the pull of
// a caller that went away at once: the next rollout is not refused busy,
// and a resume finds the agent idle and asks it again.
func TestACoordinatorThatGoesAwayDuringAPullFreesTheAgentAtOnce(t *testing.T) {
	requireDeps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f, err := harness.StartFleet(ctx, harness.FleetOptions{
		Dir: t.TempDir(), Bin: harollBin, Name: fmt.Sprintf("pit%d", time.Now().UnixNano()%1e8), Hosts: 1,
		Host: harness.HostOptions{Image: images.V1, Weights: weights, Addressing: harness.FixedPorts, HealthTimeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", f.Agents[0].Log())
		}
		f.Close()
	})
	reg, ref := stalledRegistry(t)
	// The pull under test is the Redeploy's own (a fleet without the
	// prepull, or an image pulled since): the prepull would stop the
	// rollout before it (its timeout is TestFleetOpsPrepullAndOnFailure's).
	config, _ := coordinatorConfig(t, f, map[string]string{"state_file:": "prepull: false\nstate_file:"})
	asked := 0
	askedAgain := func(what string) {
		t.Helper()
		if n := reg.LayerRequests(); n <= asked {
			t.Fatalf("%s: the engine did not ask the registry for the layer (again): the agent did not pull", what)
		} else {
			asked = n
		}
	}

	// A step timeout.
	out, err := haroll(t, "rollout", "--config", config, "--image", ref, "--step-timeout", "8s")
	if err == nil || !strings.Contains(out, "step timeout") {
		t.Fatalf("rollout: %v, want it to fail at the step timeout", err)
	}
	askedAgain("rollout")
	t.Logf("agent idle %s after the step timeout", waitIdle(t, f, 0, 5*time.Second).Round(time.Millisecond))
	if log := f.Agents[0].Log(); !strings.Contains(log, "image pull cancelled") || !strings.Contains(log, "the caller went away") {
		t.Error("the agent's log does not say the pull was cancelled because the caller went away")
	}
	// The next rollout is not refused busy.
	out, err = haroll(t, "rollout", "--config", config, "--image", ref, "--step-timeout", "8s")
	if err == nil || strings.Contains(out, "busy") || !strings.Contains(out, "step timeout") {
		t.Fatalf("second rollout: %v, want it to reach the agent and fail at the step timeout, not find it busy", err)
	}
	askedAgain("second rollout")
	waitIdle(t, f, 0, 5*time.Second)

	// The coordinator dies mid-pull: the resume finds the agent idle.
	first := startHaroll(t, "rollout", "--config", config, "--image", ref)
	deadline := time.After(90 * time.Second)
	for reg.LayerRequests() == asked {
		select {
		case <-reg.LayerRequested():
		case <-first.done:
			t.Fatalf("the rollout ended before the pull stalled:\n%s", first.output())
		case <-deadline:
			t.Fatalf("the engine did not ask for the layer in 90s:\n%s", first.output())
		}
	}
	askedAgain("third rollout")
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.wait(t, 10*time.Second)
	t.Logf("agent idle %s after the coordinator was killed", waitIdle(t, f, 0, 5*time.Second).Round(time.Millisecond))
	out, err = haroll(t, "rollout", "--config", config, "--resume", "--step-timeout", "8s")
	if err == nil || strings.Contains(out, "busy") || !strings.Contains(out, "step timeout") {
		t.Fatalf("resume: %v, want it to reach the agent and fail at the step timeout, not find it busy", err)
	}
	askedAgain("resume")
	waitIdle(t, f, 0, 5*time.Second)
	assertSafe(t, f.Hosts[0])
}
