package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
)

// scrapeMetrics GETs url and returns each sample by its name and labels as
// Prometheus writes them (`name{a="x",b="y"}`), and how long it took.
func scrapeMetrics(t *testing.T, url string) (map[string]float64, time.Duration) {
	t.Helper()
	begin := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(begin)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		samples[line[:i]] = v
	}
	return samples, took
}

// TestAgentMetricsCountARedeployThroughTheDaemon runs `haroll agent` with
// metrics.listen, redeploys every slot through it, and reads the outcome
// back from GET /metrics.
func TestAgentMetricsCountARedeployThroughTheDaemon(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host and agent of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	if err := h.AppendAgentConfig(fmt.Sprintf("metrics:\n  listen: 127.0.0.1:%d\n", port)); err != nil {
		t.Fatal(err)
	}
	a, err := harness.StartAgent(context.Background(), harollBin, h, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Error(err)
		}
		if !strings.Contains(a.Log(), "serving metrics") {
			t.Errorf("the agent did not log its metrics address:\n%s", a.Log())
		}
	})

	before, took := scrapeMetrics(t, url)
	t.Logf("scrape before the redeploy: %d samples in %s", len(before), took)
	for i := range h.Names {
		slot := fmt.Sprintf("app-%d", i+1)
		if v, ok := before[fmt.Sprintf(`haroll_replacements_total{result="replaced",slot="%s"}`, slot)]; !ok || v != 0 {
			t.Errorf("%s replaced before any redeploy: %v (present %v), want 0", slot, v, ok)
		}
		key := fmt.Sprintf(`{backend="%s",server="s%d",slot="%s"}`, harness.DefaultBackend, i+1, slot)
		if v := before["haroll_slot_weight"+key]; v != float64(weights[i]) {
			t.Errorf("haroll_slot_weight%s = %v, want %d", key, v, weights[i])
		}
		if v := before["haroll_slot_up"+key]; v != 1 {
			t.Errorf("haroll_slot_up%s = %v, want 1", key, v)
		}
	}
	if before["haroll_status_up"] != 1 {
		t.Errorf("haroll_status_up = %v, want 1", before["haroll_status_up"])
	}

	if _, err := haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2); err != nil {
		t.Fatalf("redeploy failed: %v", err)
	}
	assertServing(t, h, images.V2)

	after, took := scrapeMetrics(t, url)
	t.Logf("scrape after the redeploy: %d samples in %s", len(after), took)
	replaced := 0.0
	for i := range h.Names {
		replaced += after[fmt.Sprintf(`haroll_replacements_total{result="replaced",slot="app-%d"}`, i+1)]
	}
	if replaced != float64(len(h.Names)) {
		t.Errorf("haroll_replacements_total{result=\"replaced\"} sums to %v, want %d (one per slot)", replaced, len(h.Names))
	}
	for _, phase := range []string{"drain", "create", "stop", "start", "boot", "gate", "restore", "cleanup"} {
		key := fmt.Sprintf(`haroll_phase_duration_seconds_count{phase="%s"}`, phase)
		if after[key] != float64(len(h.Names)) {
			t.Errorf("%s = %v, want %d", key, after[key], len(h.Names))
		}
		t.Logf("phase %-8s mean %.3fs", phase, after[fmt.Sprintf(`haroll_phase_duration_seconds_sum{phase="%s"}`, phase)]/after[key])
	}
	for _, key := range []string{`haroll_phase_duration_seconds_count{phase="rollback"}`, `haroll_rollbacks_total{result="rolled_back",slot="app-1"}`,
		`haroll_drain_timeouts_total{slot="app-1"}`, `haroll_haproxy_errors_total{op="set_weight"}`, `haroll_docker_errors_total{op="clone"}`} {
		if v, ok := after[key]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", key, v, ok)
		}
	}
	if after["haroll_drain_wait_seconds_count"] != float64(len(h.Names)) {
		t.Errorf("haroll_drain_wait_seconds_count = %v, want %d", after["haroll_drain_wait_seconds_count"], len(h.Names))
	}
	// Two weight changes per slot (drain, restore); one clone per slot.
	if v := after[`haroll_haproxy_calls_total{op="set_weight"}`]; v != float64(2*len(h.Names)) {
		t.Errorf(`haroll_haproxy_calls_total{op="set_weight"} = %v, want %d`, v, 2*len(h.Names))
	}
	if v := after[`haroll_docker_calls_total{op="clone"}`]; v != float64(len(h.Names)) {
		t.Errorf(`haroll_docker_calls_total{op="clone"} = %v, want %d`, v, len(h.Names))
	}
	for i := range h.Names {
		key := fmt.Sprintf(`{backend="%s",server="s%d",slot="app-%d"}`, harness.DefaultBackend, i+1, i+1)
		if v := after["haroll_slot_weight"+key]; v != float64(weights[i]) {
			t.Errorf("after: haroll_slot_weight%s = %v, want %d", key, v, weights[i])
		}
		if v := after[fmt.Sprintf(`haroll_slot_image_info{image="%s",slot="app-%d"}`, images.V2, i+1)]; v != 1 {
			t.Errorf("app-%d: no haroll_slot_image_info for %s", i+1, images.V2)
		}
	}
	if after["haroll_agent_busy"] != 0 {
		t.Errorf("haroll_agent_busy = %v after the redeploy, want 0", after["haroll_agent_busy"])
	}
}
