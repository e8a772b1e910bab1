package cli

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/rollout"
)

func TestMetricsListenComesFromTheFlagAndIsValidated(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [a.example.com:7443]\ntls: {cert: c.crt, key: c.key, ca: ca.crt}\nmetrics_listen: 127.0.0.1:9102\n")
	cmd := newRollout()
	if err := cmd.ParseFlags([]string{"--config", p, "--metrics-listen", ":9200"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadCoordinatorConfig(cmd)
	if err != nil || cfg.MetricsListen != ":9200" {
		t.Fatalf("metrics_listen %q, %v; want the flag's :9200", cfg.MetricsListen, err)
	}
	if err := loadCoordinatorFrom(t, p, "--metrics-listen", "9200"); err == nil || !strings.Contains(err.Error(), "metrics_listen") {
		t.Fatalf("got %v, want metrics_listen named", err)
	}
	ap := writeConfig(t, "metrics: {listen: nowhere}\nslots:\n  - {name: a, backend: app, server: s1, container: c1}\n")
	if err := loadFrom(t, ap); err == nil || !strings.Contains(err.Error(), "metrics.listen: nowhere") {
		t.Fatalf("got %v, want metrics.listen named", err)
	}
}

func TestNoMetricsListenServesNothingAndWrapsNothing(t *testing.T) {
	var hp agent.HAProxy
	m := newAgentMetrics(agent.Config{})
	if m != nil {
		t.Fatal("metrics without metrics.listen")
	}
	if h, _, opts := m.wrap(hp, nil); h != hp || opts != nil {
		t.Error("wrapped without metrics.listen")
	}
	rm, err := serveRolloutMetrics("", []string{"a:1"})
	if err != nil || rm != nil {
		t.Fatalf("rollout metrics without metrics_listen: %v, %v", rm, err)
	}
	called := false
	rm.events(func(rollout.Event) { called = true })(rollout.Event{})
	rm.finish(rollout.Result{})
	rm.close()
	if !called {
		t.Error("the progress lost its events")
	}
}

func TestTheRolloutsProgressIsServedWhileItRuns(t *testing.T) {
	rm, err := serveRolloutMetrics("127.0.0.1:0", []string{"a:1", "b:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer rm.close()
	var seen int
	events := rm.events(func(rollout.Event) { seen++ })
	events(rollout.Event{Kind: rollout.EventBatchStart, Batch: 1, Batches: 2, Hosts: 1, Steps: 1})
	events(rollout.Event{Kind: rollout.EventSlotDone, Batch: 1, Batches: 2, Step: 1, Steps: 1, Host: "a:1", Result: rollout.ResultReplaced})
	if seen != 2 {
		t.Errorf("progress saw %d events, want 2", seen)
	}
	resp, err := http.Get("http://" + rm.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{"haroll_rollout_batch 1", "haroll_rollout_batches 2", `haroll_rollout_hosts{result="done"} 1`,
		`haroll_rollout_hosts{result="pending"} 1`, `haroll_rollout_slots_done_total{result="replaced"} 1`} {
		if !strings.Contains(string(body), line) {
			t.Errorf("no %q in the scrape", line)
		}
	}
}
