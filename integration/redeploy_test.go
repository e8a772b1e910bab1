package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
	"github.com/haroll/haroll/runtime"
)

// weights are deliberately not 1: restoring a hard-coded 1 must show.
var weights = []int{7, 3, 5}

// startHost starts a simulated host for one test and removes it afterwards.
func startHost(t *testing.T, addressing harness.Addressing) *harness.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("hit%d", time.Now().UnixNano()%1e9)
	h, err := harness.StartHost(ctx, harness.HostOptions{
		Dir: t.TempDir(), Name: name, Image: images.V1, Weights: weights, Addressing: addressing,
		HealthTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// haroll runs the haroll binary and returns its combined output.
func haroll(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, harollBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("haroll %s:\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

// underLoad runs fn while at least 200 requests/s, and a 3-second request
// every 500 ms, go through the host's frontend; it returns what the load saw.
func underLoad(t *testing.T, h *harness.Host, fn func()) loadgen.Result {
	t.Helper()
	stop := loadgen.Start(context.Background(), loadgen.Options{
		URL: h.URL("/"), Rate: 250, SlowURL: h.URL("/slow?ms=3000"), SlowEvery: 500 * time.Millisecond,
	})
	time.Sleep(500 * time.Millisecond)
	fn()
	time.Sleep(1500 * time.Millisecond) // the last second of load shows who serves now
	res := stop()
	t.Logf("load: %s", res)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	return res
}

// snapshot is what must not change when a request is refused.
type snapshot struct {
	servers    []string
	containers []harness.Container
}

func takeSnapshot(t *testing.T, h *harness.Host) snapshot {
	t.Helper()
	ctx := context.Background()
	stats, err := h.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var s snapshot
	for _, st := range stats {
		s.servers = append(s.servers, fmt.Sprintf("%s %s w=%d %s", st.Server, st.Status, st.Weight, st.Addr))
	}
	if s.containers, err = h.Containers(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// assertSafe checks that every server of h is UP at its original weight and
// that h holds no container but its slots', whatever image each runs.
func assertSafe(t *testing.T, h *harness.Host) []runtime.ServerStat {
	t.Helper()
	ctx := context.Background()
	stats, err := h.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stats {
		if s.Weight != weights[i] || !s.FullyUp() {
			t.Errorf("%s: status %s weight %d, want UP at weight %d", s.Server, s.Status, s.Weight, weights[i])
		}
	}
	all, err := h.AllContainers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	if !slices.Equal(all, h.Names) {
		t.Errorf("containers on the host: %v, want exactly %v", all, h.Names)
	}
	return stats
}

// assertServing is assertSafe, with every slot's container on image.
func assertServing(t *testing.T, h *harness.Host, image string) []runtime.ServerStat {
	t.Helper()
	stats := assertSafe(t, h)
	ctrs, err := h.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range ctrs {
		if c.Image != image {
			t.Errorf("%s runs %s, want %s", h.Names[i], c.Image, image)
		}
	}
	return stats
}

// assertBackOnV1 checks that a redeploy that was rolled back lost nothing
// and left the host as before: only v1 served at the end, every server UP at
// its weight, the same containers.
func assertBackOnV1(t *testing.T, h *harness.Host, before snapshot, res loadgen.Result) {
	t.Helper()
	assertNoLoss(t, res)
	if !slices.Equal(res.LastVersions, []string{"v1"}) {
		t.Errorf("versions served at the end: %v, want only v1", res.LastVersions)
	}
	assertServing(t, h, images.V1)
	if after := takeSnapshot(t, h); !slices.Equal(after.containers, before.containers) {
		t.Errorf("containers changed: %v -> %v", before.containers, after.containers)
	}
}

func assertNoLoss(t *testing.T, res loadgen.Result) {
	t.Helper()
	if res.Failed != 0 || res.SlowFailed != 0 || res.Dropped != 0 {
		t.Errorf("lost requests: %s; errors %v", res, res.Errors)
	}
	if res.SlowOK == 0 {
		t.Error("no slow request completed: the drain was not exercised")
	}
}

func TestRedeployOnFixedPortsLosesNoRequest(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	var out string
	res := underLoad(t, h, func() {
		var err error
		out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2)
		if err != nil {
			t.Errorf("redeploy failed: %v", err)
		}
	})
	assertNoLoss(t, res)
	if !slices.Equal(res.LastVersions, []string{"v2"}) {
		t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
	}
	assertServing(t, h, images.V2)
	for _, phase := range []string{"drain", "stop", "boot", "gate", "restore"} {
		if !strings.Contains(out, phase) {
			t.Errorf("no %s progress line in the output", phase)
		}
	}
	status, err := haroll(t, "status", "--config", h.AgentYAML)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range h.Names {
		want := regexp.MustCompile(fmt.Sprintf(`app-%d\s+app/s%d\s+`, i+1, i+1) + name + `\s+\w{12}\s+` + regexp.QuoteMeta(images.V2) + `\s+UP\s+` + strconv.Itoa(weights[i]) + `\s`)
		if !want.MatchString(status) {
			t.Errorf("status does not show %s on v2, UP at weight %d", name, weights[i])
		}
	}
}

func TestRedeployToANewAddressPointsHAProxyAtIt(t *testing.T) {
	requireDeps(t)
	for _, addressing := range []harness.Addressing{harness.EphemeralPorts, harness.UserNetwork} {
		t.Run(string(addressing), func(t *testing.T) {
			t.Parallel() // a host of its own: beside another case (main_test.go)
			h := startHost(t, addressing)
			before, err := h.Servers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var report agent.Report
			res := underLoad(t, h, func() {
				out, err := haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--output", "json")
				if err != nil {
					t.Errorf("redeploy failed: %v", err)
				}
				// Progress lines come first (stderr); the JSON report is the rest.
				if i := strings.Index(out, "{\n"); i < 0 || json.Unmarshal([]byte(out[i:]), &report) != nil {
					t.Errorf("no JSON report in the output")
				}
			})
			for _, s := range report.Slots {
				if s.Result != agent.ResultReplaced || s.Weight == 0 {
					t.Errorf("report for %s: %+v", s.Slot, s)
				}
				if _, moved := s.Phases[agent.PhaseAddress]; addressing == harness.EphemeralPorts && !moved {
					t.Errorf("%s: no address phase for a new port", s.Slot)
				}
			}
			assertNoLoss(t, res)
			if !slices.Equal(res.LastVersions, []string{"v2"}) {
				t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
			}
			after := assertServing(t, h, images.V2)
			addrs, err := h.Addrs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for i := range after {
				if after[i].Addr != addrs[i] {
					t.Errorf("%s points at %s, the new container is at %s", after[i].Server, after[i].Addr, addrs[i])
				}
				// Docker hands a freed user-network IP to the next container,
				// so only a published ephemeral port is sure to move.
				if addressing == harness.EphemeralPorts && after[i].Addr == before[i].Addr {
					t.Errorf("%s still at %s: the new container should have a new port", after[i].Server, after[i].Addr)
				}
			}
		})
	}
}

func TestABrokenImageIsRolledBackWithoutLoss(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	before := takeSnapshot(t, h)
	var out string
	res := underLoad(t, h, func() {
		var err error
		out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.Broken)
		if err == nil {
			t.Error("redeploy of a broken image succeeded")
		}
	})
	assertBackOnV1(t, h, before, res)
	if !strings.Contains(out, "rolled_back") {
		t.Error("the summary does not say the slot was rolled back")
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	before := takeSnapshot(t, h)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown slot", []string{"--config", h.AgentYAML, "--image", images.V2, "--slot", "nope"}, `unknown slot "nope"`},
		{"missing socket", []string{"--config", h.AgentYAML, "--image", images.V2, "--haproxy-socket", "/nonexistent/admin.sock"}, "haproxy runtime socket unreachable"},
		{"unknown image", []string{"--config", h.AgentYAML, "--image", "haroll-it-app:nope"}, "haroll-it-app:nope"},
		{"invalid image", []string{"--config", h.AgentYAML, "--image", "Bad Image!"}, "invalid image reference"},
		{"missing config", []string{"--config", "/nonexistent/agent.yaml", "--image", images.V2}, "does not exist"},
		{"invalid config", []string{"--config", writeFile(t, "drain: {mode: fast}\nslots: []\n"), "--image", images.V2}, "drain.mode: fast"},
		{"no image", []string{"--config", h.AgentYAML}, "--image is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := haroll(t, append([]string{"redeploy"}, tc.args...)...)
			if err == nil {
				t.Fatal("exit 0 for bad input")
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("the message does not say %q", tc.want)
			}
			if after := takeSnapshot(t, h); !slices.Equal(after.servers, before.servers) || !slices.Equal(after.containers, before.containers) {
				t.Errorf("bad input changed the host:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}
