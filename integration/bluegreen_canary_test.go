package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
	"github.com/haroll/haroll/rollout"
)

// serverWeights samples the weight of h's server (MAINT counts as -1) every
// 50 ms until stop, and returns the values seen, in order, without repeats.
func serverWeights(h *harness.Host, server string, stop <-chan struct{}) <-chan []int {
	seen := make(chan []int, 1)
	go func() {
		var ws []int
		for {
			if stats, err := h.Servers(context.Background()); err == nil {
				for _, s := range stats {
					if s.Server != server {
						continue
					}
					w := s.Weight
					if s.InMaint() {
						w = -1
					}
					if len(ws) == 0 || ws[len(ws)-1] != w {
						ws = append(ws, w)
					}
				}
			}
			select {
			case <-stop:
				seen <- ws
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return seen
}

// TestACanaryRolloutOfBlueGreenHosts runs `haroll rollout --canary 1` over
// two hosts whose slots are blue/green pairs behind a cookie backend: the
// canary's new side (s1b) serves at 30% of the slot's weight beside the old
// side, which keeps its whole weight. A faulty image is caught by the
// analysis and undone (the new side drained and removed, the old side never
// touched); a healthy one is promoted (the new side at its whole weight, the
// old side retired) and the rollout goes on. Beside the unpinned load the
// analysis reads, clients pinned by cookie to host 1's servers must lose
// nothing, and host 1's capacity never dips.
func TestACanaryRolloutOfBlueGreenHosts(t *testing.T) {
	requireDeps(t)
	wallTime(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	ho := pairHostOptions(harness.FixedPorts)
	f := startFleetWith(t, harness.FleetOptions{
		Dir: t.TempDir(), Bin: harollBin, Name: fmt.Sprintf("fbg%d", time.Now().UnixNano()%1e8), Hosts: 2, Host: ho,
	})
	for _, h := range f.Hosts {
		assertPrimaryLive(t, h)
	}
	h1 := f.Hosts[0]
	type run struct {
		out     string
		err     error
		fleet   []loadgen.Result
		pinned  loadgen.Result
		cap     harness.Capacity
		weights []int // s1b's on host 1
	}
	canary := func(image string) run {
		stopFleet := loadFleet(f)
		stopPinned := loadgen.Start(context.Background(), loadgen.Options{
			URL: h1.URL("/"), Rate: 100, SlowURL: h1.URL("/slow?ms=2000"), SlowEvery: time.Second, Clients: pinnedClients,
		})
		time.Sleep(time.Second) // every pinned client has its cookie
		sampler := h1.StartCapacitySampler(context.Background(), "", 50*time.Millisecond)
		stopWeights := make(chan struct{})
		seen := serverWeights(h1, "s1b", stopWeights)
		// 30% of weight 7 is 3: the new side takes 3 of 18 of host 1's
		// unpinned traffic, some 50 requests in the window.
		cmd, out := canaryRollout(t, f, image, "50%", 5*time.Second, "--canary-weight", "30%")
		err := cmd.Wait()
		close(stopWeights)
		time.Sleep(1500 * time.Millisecond)
		r := run{out: out.String(), err: err, fleet: stopFleet(), pinned: stopPinned(), cap: sampler.Stop(), weights: <-seen}
		t.Logf("haroll rollout:\n%s", r.out)
		t.Logf("host 1 s1b weights seen (-1: MAINT): %v", r.weights)
		t.Logf("host 1 pinned load: %s %v", r.pinned, r.pinned.Errors)
		assertNoLoss(t, r.pinned)
		assertCapacityKept(t, r.cap)
		if !slices.Contains(r.weights, 3) {
			t.Errorf("the canary's new side never ran at 3 (30%% of 7): %v", r.weights)
		}
		return r
	}

	t.Run("a faulty canary is undone: its new side goes, the old side was never touched", func(t *testing.T) {
		before := takeSnapshot(t, h1)
		r := canary(images.Faulty)
		if r.err == nil {
			t.Error("a rollout whose canary failed exited 0")
		}
		for _, want := range []string{"canary failed", "rollback: rolled_back"} {
			if !strings.Contains(r.out, want) {
				t.Errorf("the output does not say %q", want)
			}
		}
		// Only the faulty image's own 500s on host 1; nothing lost on host 2.
		for _, e := range r.fleet[0].Errors {
			if !strings.HasPrefix(e, "500 ") {
				t.Errorf("host 1 lost a request otherwise than by the faulty app's 500: %s", e)
			}
		}
		t.Logf("host 1 unpinned load: %s", r.fleet[0])
		assertNoLoss(t, r.fleet[1])
		for _, h := range f.Hosts {
			assertPairs(t, h, side(h, false), images.V1)
		}
		// The old side kept its container, address and weight throughout.
		after := takeSnapshot(t, h1)
		s1 := func(lines []string) string {
			i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "s1 ") })
			if i < 0 {
				return ""
			}
			return lines[i]
		}
		if b, a := s1(before.servers), s1(after.servers); b == "" || a != b {
			t.Errorf("the old side changed: %q -> %q", b, a)
		}
		// The drain at weight 0 ends as soon as s1b is idle, often within
		// one sample: only the end, MAINT, is certain to be seen.
		if i := slices.Index(r.weights, 3); i < 0 || r.weights[len(r.weights)-1] != -1 {
			t.Errorf("s1b weights %v: want the canary's 3, then MAINT", r.weights)
		}
		st, err := rollout.ReadState(f.StateFile)
		if err != nil || st.Canary == nil || st.Canary.Phase != rollout.CanaryRolledBack {
			t.Fatalf("state %+v, %v", st, err)
		}
	})

	t.Run("a healthy canary is promoted: the old side is retired and the rollout goes on", func(t *testing.T) {
		r := canary(images.V2)
		if r.err != nil {
			t.Fatalf("rollout: %v", r.err)
		}
		for _, want := range []string{"canary)  passed", "canary)  promoted"} {
			if !strings.Contains(r.out, want) {
				t.Errorf("the output does not say %q", want)
			}
		}
		assertFleetLoad(t, r.fleet, "v2")
		for _, h := range f.Hosts {
			assertPairs(t, h, side(h, true), images.V2)
			assertStatusShowsLive(t, h, side(h, true))
		}
		if i := slices.Index(r.weights, 3); i < 0 || !slices.Contains(r.weights[i:], 7) {
			t.Errorf("s1b weights %v: want the canary at 3, then promoted to 7", r.weights)
		}
	})
}
