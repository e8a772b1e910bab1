package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/agent"
)

func scrape(t *testing.T, url string) (string, time.Duration) {
	t.Helper()
	begin := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body), time.Since(begin)
}

func serve(t *testing.T, src StatusReader, statusTimeout time.Duration) (*Server, *Observer, *Calls) {
	t.Helper()
	reg := NewRegistry()
	o := NewObserver(reg, []string{"app-1", "app-2"})
	calls := NewCalls(reg)
	reg.MustRegister(NewSlots(src, statusTimeout))
	s, err := Listen("127.0.0.1:0", reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, o, calls
}

func TestTheEndpointServesTheAgentsMetrics(t *testing.T) {
	s, o, calls := serve(t, &statusSource{slots: twoSlots()}, time.Second)
	o.Slot(agent.SlotReport{Slot: "app-1", Result: agent.ResultReplaced, Total: time.Second})
	o.Phase(agent.Event{Slot: "app-1", Phase: agent.PhaseGate, Duration: 1500 * time.Millisecond})
	_ = calls.Docker(&backends{}).Start(context.Background(), "c1")
	body, took := scrape(t, "http://"+s.Addr()+"/metrics")
	t.Logf("scrape: %d bytes in %s", len(body), took)
	for _, line := range []string{
		`haroll_replacements_total{result="replaced",slot="app-1"} 1`,
		`haroll_replacements_total{result="replaced",slot="app-2"} 0`,
		`haroll_phase_duration_seconds_count{phase="gate"} 1`,
		`haroll_phase_duration_seconds_bucket{phase="gate",le="2.5"} 1`,
		`haroll_docker_calls_total{op="start"} 1`,
		`haroll_haproxy_errors_total{op="set_weight"} 0`,
		`haroll_slot_weight{backend="app",server="s1",slot="app-1"} 7`,
		`haroll_status_up 1`,
		`go_goroutines `,
		`process_start_time_seconds `,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("no %q in the scrape", line)
		}
	}
}

func TestAScrapeOfTheEndpointIsBoundedWhenHAProxyHangs(t *testing.T) {
	src := &statusSource{slots: twoSlots(), hang: make(chan struct{})}
	defer close(src.hang)
	s, o, _ := serve(t, src, 200*time.Millisecond)
	o.Slot(agent.SlotReport{Slot: "app-2", Result: agent.ResultSkipped})
	body, took := scrape(t, "http://"+s.Addr()+"/metrics")
	t.Logf("scrape during a hang: %s", took)
	if took > 2*time.Second {
		t.Errorf("scrape took %s with a 200ms status timeout", took)
	}
	if !strings.Contains(body, "haroll_status_up 0") || strings.Contains(body, "haroll_slot_weight{") {
		t.Errorf("want haroll_status_up 0 and no slot weight during the hang:\n%s", grepLines(body, "haroll_s"))
	}
	// What the agent counted is still there.
	if !strings.Contains(body, `haroll_replacements_total{result="skipped",slot="app-2"} 1`) {
		t.Errorf("the counters are missing from a scrape during the hang")
	}
}

func TestTheRootPointsAtMetricsAndOtherPathsAreNotFound(t *testing.T) {
	s, _, _ := serve(t, &statusSource{}, time.Second)
	if body, _ := scrape(t, "http://"+s.Addr()+"/"); !strings.Contains(body, "/metrics") {
		t.Errorf("GET / = %q", body)
	}
	resp, err := http.Get("http://" + s.Addr() + "/debug")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /debug: %s, want 404", resp.Status)
	}
}

func TestListeningOnATakenAddressFails(t *testing.T) {
	s, _, _ := serve(t, &statusSource{}, time.Second)
	if _, err := Listen(s.Addr(), NewRegistry(), slog.Default()); err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("got %v, want an error naming %s", err, s.Addr())
	}
}

func grepLines(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
