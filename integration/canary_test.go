package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/rollout"
)

// canaryRollout starts `haroll rollout` of image by batch with host 1 as a
// canary at 10% of its weight, its counters read every 500 ms for window.
func canaryRollout(t *testing.T, f *harness.Fleet, image, batch string, window time.Duration, extra ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	args := append([]string{"rollout", "--config", f.CoordinatorYAML, "--image", image, "--batch", batch,
		"--canary", "1", "--canary-weight", "10%", "--canary-window", window.String()}, extra...)
	cmd := exec.Command(harollBin, args...)
	cmd.Env = append(os.Environ(), "HAROLL_CANARY_INTERVAL=500ms", "HAROLL_CANARY_MIN_REQUESTS=20")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// canaryWeights samples the weight of host's first server (s1) while a
// canary runs (serverWeights: -1 while in MAINT).
func canaryWeights(h *harness.Host, stop <-chan struct{}) <-chan []int {
	return serverWeights(h, "s1", stop)
}

func TestCanaryRollout(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	f := startFleet(t)

	t.Run("a canary that serves 5xx is caught by the analysis and rolled back, the rest of the fleet untouched", func(t *testing.T) {
		before := snapshotFleet(t, f)
		stopLoad := loadFleet(f)
		time.Sleep(500 * time.Millisecond)
		stopWeights := make(chan struct{})
		seen := canaryWeights(f.Hosts[0], stopWeights)
		// A 5 s window is the healthy canary's below: at host 1's 60
		// requests/s its canary server (weight 1 of 9) serves about 30 in it,
		// over the 20 the analysis needs to judge.
		cmd, out := canaryRollout(t, f, images.Faulty, "35%", 5*time.Second)
		err := cmd.Wait()
		close(stopWeights)
		t.Logf("haroll rollout:\n%s", out)
		time.Sleep(time.Second)
		results := stopLoad()
		if err == nil {
			t.Error("a rollout whose canary failed exited 0")
		}
		for _, want := range []string{"canary failed", "above max_error_rate", "rollback: rolled_back"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the output does not say %q", want)
			}
		}
		ws := <-seen
		t.Logf("host 1 server 1 weights seen: %v", ws)
		if !slices.Contains(ws, 1) {
			t.Errorf("the canary never ran at 10%% of weight 7 (1): %v", ws)
		}
		for i, res := range results {
			t.Logf("host %d load: %s %v", i+1, res, res.Errors)
			if i > 0 {
				assertNoLoss(t, res)
				continue
			}
			// Host 1's canary failed on purpose: only 500s from it, a share
			// of its 10% of the traffic, no transport error.
			for _, e := range res.Errors {
				if !strings.HasPrefix(e, "500 ") {
					t.Errorf("host 1 lost a request otherwise than by the faulty app's 500: %s", e)
				}
			}
			if res.Failed == 0 || float64(res.Failed) > 0.05*float64(res.Sent) {
				t.Errorf("host 1: %d of %d requests failed, want a few (the canary's share x %.0f%%)", res.Failed, res.Sent, 100*harness.FaultyErrorRate)
			}
		}
		after := snapshotFleet(t, f)
		assertServing(t, f.Hosts[0], images.V1)
		for i := 1; i < len(f.Hosts); i++ {
			assertServing(t, f.Hosts[i], images.V1)
			if !slices.Equal(after[i], before[i]) {
				t.Errorf("host %d is outside the canary but was touched", i+1)
			}
		}
		st, err := rollout.ReadState(f.StateFile)
		if err != nil || st.Canary == nil || st.Canary.Phase != rollout.CanaryRolledBack {
			t.Fatalf("state %+v, %v", st, err)
		}
		t.Logf("analysis: new %s; old %s", st.Canary.New, st.Canary.Old)
	})

	t.Run("a healthy canary runs at its share, waits for promote, then the rollout goes on", func(t *testing.T) {
		stopLoad := loadFleet(f)
		time.Sleep(500 * time.Millisecond)
		stopWeights := make(chan struct{})
		seen := canaryWeights(f.Hosts[0], stopWeights)
		// After the canary the other 3 hosts go in one batch: the batch
		// limit itself is TestFleetRollout's (35%, 2 batches); here one
		// batch after the promote shows the rollout goes on.
		cmd, out := canaryRollout(t, f, images.V2, "75%", 5*time.Second, "--pause")
		deadline := time.Now().Add(2 * time.Minute)
		for {
			st, err := rollout.ReadState(f.StateFile)
			if err == nil && st.Canary != nil && st.Canary.Phase == rollout.CanaryPaused {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("the canary never paused: %+v %v\n%s", st, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // paused: nothing else moves
		if c, err := f.Hosts[1].Containers(context.Background()); err != nil || c[0].Image != images.V1 {
			t.Errorf("host 2 changed while the canary was paused: %+v %v", c, err)
		}
		promote, err := haroll(t, "rollout", "promote", "--config", f.CoordinatorYAML)
		if err != nil || !strings.Contains(promote, "carries it out") {
			t.Fatalf("promote: %v\n%s", err, promote)
		}
		err = cmd.Wait()
		close(stopWeights)
		t.Logf("haroll rollout:\n%s", out)
		time.Sleep(1500 * time.Millisecond)
		results := stopLoad()
		if err != nil {
			t.Fatalf("rollout: %v", err)
		}
		ws := <-seen
		t.Logf("host 1 server 1 weights seen: %v", ws)
		if i := slices.Index(ws, 1); i < 0 || !slices.Contains(ws[i:], 7) {
			t.Errorf("weights %v: want the canary at 1, then promoted to 7", ws)
		}
		for _, want := range []string{"canary)  passed", "canary)  paused", "canary)  promoted"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the output does not say %q", want)
			}
		}
		assertFleetLoad(t, results, "v2")
		for _, h := range f.Hosts {
			assertServing(t, h, images.V2)
		}
	})
}
