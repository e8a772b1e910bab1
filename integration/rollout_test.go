package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
	"github.com/haroll/haroll/internal/tlsconf"
)

const fleetHosts = 4

// startFleet starts 4 hosts (HAProxy + 3 containers + a `haroll agent` with
// mutual TLS each) for one test.
func startFleet(t *testing.T) *harness.Fleet {
	t.Helper()
	return startFleetWith(t, harness.FleetOptions{
		Dir: t.TempDir(), Bin: harollBin, Name: fmt.Sprintf("fit%d", time.Now().UnixNano()%1e8), Hosts: fleetHosts,
		Host: harness.HostOptions{Image: images.V1, Weights: weights, Addressing: harness.FixedPorts, HealthTimeout: 10 * time.Second},
	})
}

// startFleetWith starts the fleet o describes for one test, and stops it
// when the test ends (logging every agent's log if it failed).
func startFleetWith(t *testing.T, o harness.FleetOptions) *harness.Fleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f, err := harness.StartFleet(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, a := range f.Agents {
				t.Logf("agent %d log:\n%s", i+1, a.Log())
			}
		}
		f.Close()
	})
	return f
}

// outSampler watches every host's HAProxy while a rollout runs and records
// the most hosts with a server out of service at once, and the most servers
// out on one host. Out means weight 0 or not UP: "UP 1/2" (one check failed,
// still serving) is UP. worst says what was out when the most hosts were.
type outSampler struct {
	mu                   sync.Mutex
	maxHosts, maxPerHost int
	worst                []string
	stop                 chan struct{}
	done                 chan struct{}
}

func sampleOut(t *testing.T, f *harness.Fleet) *outSampler {
	t.Helper()
	s := &outSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			hostsOut := 0
			var seen []string
			for i, h := range f.Hosts {
				stats, err := h.Servers(context.Background())
				if err != nil {
					continue
				}
				out := 0
				for _, st := range stats {
					if st.Weight == 0 || !strings.HasPrefix(st.Status, "UP") {
						out++
						seen = append(seen, fmt.Sprintf("h%d/%s %s w=%d", i+1, st.Server, st.Status, st.Weight))
					}
				}
				if out > 0 {
					hostsOut++
				}
				s.mu.Lock()
				s.maxPerHost = max(s.maxPerHost, out)
				s.mu.Unlock()
			}
			s.mu.Lock()
			if hostsOut > s.maxHosts {
				s.maxHosts, s.worst = hostsOut, seen
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *outSampler) finish() (maxHosts, maxPerHost int) {
	close(s.stop)
	<-s.done
	return s.maxHosts, s.maxPerHost
}

// loadFleet sends load through every host's frontend. Its stop ends every
// host's load at once: each waits for its slow requests in flight (up to
// 3 s), which one after the other would add up to 12 s of load past the
// rollout on the last host.
func loadFleet(f *harness.Fleet) func() []loadgen.Result {
	var stops []func() loadgen.Result
	for _, h := range f.Hosts {
		stops = append(stops, loadgen.Start(context.Background(), loadgen.Options{
			URL: h.URL("/"), Rate: 60, Workers: 32, SlowURL: h.URL("/slow?ms=3000"), SlowEvery: time.Second,
		}))
	}
	return func() []loadgen.Result {
		res := make([]loadgen.Result, len(stops))
		var wg sync.WaitGroup
		for i, stop := range stops {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = stop() }()
		}
		wg.Wait()
		return res
	}
}

// assertFleetLoad logs each host's load and checks it lost nothing; with a
// version, it also checks only that version served in the last second.
func assertFleetLoad(t *testing.T, results []loadgen.Result, version string) {
	t.Helper()
	for i, res := range results {
		t.Logf("host %d load: %s", i+1, res)
		assertNoLoss(t, res)
		if version != "" && !slices.Equal(res.LastVersions, []string{version}) {
			t.Errorf("host %d serves %v at the end, want only %s", i+1, res.LastVersions, version)
		}
	}
}

type fleetSnapshot [][]harness.Container

func snapshotFleet(t *testing.T, f *harness.Fleet) fleetSnapshot {
	t.Helper()
	var s fleetSnapshot
	for _, h := range f.Hosts {
		c, err := h.Containers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, c)
	}
	return s
}

func TestFleetRollout(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	f := startFleet(t)
	before := snapshotFleet(t, f)

	t.Run("a dry run prints the plan and changes nothing", func(t *testing.T) {
		out, err := haroll(t, "rollout", "--config", f.CoordinatorYAML, "--image", images.V2, "--batch", "35%", "--dry-run")
		if err != nil {
			t.Fatal(err)
		}
		for i := range f.Agents {
			if !strings.Contains(out, f.Agents[i].Addr) {
				t.Errorf("the plan does not name %s", f.Agents[i].Addr)
			}
		}
		if after := snapshotFleet(t, f); !slices.EqualFunc(after, before, slices.Equal) {
			t.Error("a dry run changed containers")
		}
	})

	t.Run("rollout by 35% loses no request and keeps at most 2 hosts and 1 slot per host out", func(t *testing.T) {
		stopLoad := loadFleet(f)
		time.Sleep(500 * time.Millisecond)
		sampler := sampleOut(t, f)
		rollout := exec.Command(harollBin, "rollout", "--config", f.CoordinatorYAML, "--image", images.V2, "--batch", "35%")
		var out bytes.Buffer
		rollout.Stdout, rollout.Stderr = &out, &out
		if err := rollout.Start(); err != nil {
			t.Fatal(err)
		}
		// While the rollout holds host 1, a manual redeploy there is refused:
		// the host belongs to the rollout (its claim) and is busy with it.
		waitHostOut(t, f.Hosts[0])
		busy, err := haroll(t, "redeploy", "--config", f.Hosts[0].AgentYAML, "--image", images.V2)
		if err == nil || !strings.Contains(busy, "host belongs to rollout") {
			t.Errorf("a manual redeploy through the agent during the rollout: err %v, want the rollout's claim named", err)
		}
		busy, err = haroll(t, "redeploy", "--config", f.Hosts[0].AgentYAML, "--image", images.V2, "--break-claim")
		if err == nil || !strings.Contains(busy, "agent: another replacement is running") {
			t.Errorf("a manual redeploy with --break-claim during the rollout: err %v, want busy from the agent", err)
		}
		rolloutErr := rollout.Wait()
		t.Logf("haroll rollout:\n%s", out.String())
		maxHosts, maxPerHost := sampler.finish()
		time.Sleep(1500 * time.Millisecond)
		results := stopLoad()
		if rolloutErr != nil {
			t.Fatalf("rollout failed: %v", rolloutErr)
		}
		assertFleetLoad(t, results, "v2")
		t.Logf("most hosts with a server out at once: %d (%v); most servers out on one host: %d", maxHosts, sampler.worst, maxPerHost)
		if maxHosts > 2 || maxPerHost > 1 {
			t.Errorf("seen %d hosts with a server out at once (want <= ceil(35%% x 4) = 2), %d servers out on one host (want <= 1)", maxHosts, maxPerHost)
		}
		if maxHosts == 0 {
			t.Error("the sampler never saw a server out: it did not watch the rollout")
		}
		for _, h := range f.Hosts {
			assertServing(t, h, images.V2)
		}
	})

	t.Run("a broken image stops after the first batch and rolls it back", func(t *testing.T) {
		before := snapshotFleet(t, f)
		stopLoad := loadFleet(f)
		time.Sleep(500 * time.Millisecond)
		out, err := haroll(t, "rollout", "--config", f.CoordinatorYAML, "--image", images.Broken, "--batch", "35%")
		time.Sleep(time.Second)
		results := stopLoad()
		if err == nil {
			t.Error("a rollout of a broken image exited 0")
		}
		for i, res := range results {
			t.Logf("host %d load: %s", i+1, res)
			if res.Failed != 0 || res.SlowFailed != 0 || res.Dropped != 0 {
				t.Errorf("host %d lost requests: %s %v", i+1, res, res.Errors)
			}
		}
		after := snapshotFleet(t, f)
		for i, h := range f.Hosts {
			assertServing(t, h, images.V2)
			if i >= 2 && !slices.Equal(after[i], before[i]) {
				t.Errorf("host %d is in the second batch but was touched", i+1)
			}
		}
		if !strings.Contains(out, "not_run") {
			t.Error("the report does not show later batches as not run")
		}
	})

	t.Run("agents refuse clients without a certificate from their CA", func(t *testing.T) {
		pki := f.PKI
		good, err := tlsconf.Client(filepath.Join(pki, "coordinator.crt"), filepath.Join(pki, "coordinator.key"), filepath.Join(pki, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		stranger, err := tlsconf.Client(filepath.Join(pki, "stranger.crt"), filepath.Join(pki, "stranger.key"), filepath.Join(pki, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: x509.NewCertPool()}
		caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		noCert.RootCAs.AppendCertsFromPEM(caPEM)
		addr := f.Agents[0].Addr
		if err := callStatus(addr, good); err != nil {
			t.Fatalf("the coordinator's certificate is refused: %v", err)
		}
		if err := callStatus(addr, noCert); err == nil {
			t.Error("a client without a certificate was served")
		}
		if err := callStatus(addr, stranger); err == nil {
			t.Error("a client with a certificate from another CA was served")
		}
	})

	t.Run("--insecure on a non-loopback address is refused", func(t *testing.T) {
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		out, err := haroll(t, "agent", "--config", f.Hosts[0].AgentYAML, "--insecure",
			"--listen", fmt.Sprintf("0.0.0.0:%d", port), "--socket", filepath.Join(t.TempDir(), "a.sock"))
		if err == nil || !strings.Contains(out, "not a loopback address") {
			t.Errorf("err %v, want a refusal naming loopback", err)
		}
	})
}

// waitHostOut waits until one of h's servers is out of service.
func waitHostOut(t *testing.T, h *harness.Host) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		stats, _ := h.Servers(context.Background())
		for _, s := range stats {
			if s.Weight == 0 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the rollout never drained a server on host 1")
}

func callStatus(addr string, cfg *tls.Config) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = agentpb.NewAgentClient(conn).Status(ctx, &agentpb.StatusRequest{})
	return err
}
