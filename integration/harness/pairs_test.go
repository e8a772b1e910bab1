//go:build linux

package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCapacityCountsOnlyServersTakingNewTraffic(t *testing.T) {
	const reply = "# pxname,svname,qcur,status,weight,\n" +
		"fe_app,FRONTEND,,OPEN,,\n" +
		"app,s1,0,UP,7,\n" +
		"app,s2,0,UP 1/2,3,\n" + // going down: still takes traffic
		"app,s3,0,DRAIN,0,\n" +
		"app,s4,0,MAINT,5,\n" +
		"app,s5,0,NOLB,4,\n" +
		"app,s6,0,DOWN 1/2,6,\n" +
		"app,s7,0,UP,0,\n" +
		"other,s8,0,UP,9,\n" +
		"app,BACKEND,0,UP,10,\n"
	sum, seen, err := capacityOf(reply, "app")
	if err != nil {
		t.Fatal(err)
	}
	if sum != 10 {
		t.Errorf("capacity %d, want 10 (s1 7 + s2 3): %s", sum, seen)
	}
	if _, _, err := capacityOf("# pxname,svname,status,weight,\nother,s1,UP,1,\n", "app"); err == nil {
		t.Error("no error for a reply without the backend's servers")
	}
}

// TestThePairConfigKeepsTheLiveSideOverAReload checks on the real HAProxy
// what a blue/green host relies on: the rendered state-file lines load the
// state saved with `show servers state`, so a reload keeps the idle twin in
// MAINT and the live one's runtime weight; and the sampler sees the
// capacity change.
func TestThePairConfigKeepsTheLiveSideOverAReload(t *testing.T) {
	requireHAProxy(t)
	app, twin := versionApp(t), versionApp(t)
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "server-state")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := StartHAProxy(ctx, HAProxyConfig{Dir: dir, Frontend: port, ServerStateFile: state, Inter: 50 * time.Millisecond, Servers: []Server{
		{Name: "s1", Addr: app.Listener.Addr().String(), Weight: 7},
		{Name: "s1b", Addr: twin.Listener.Addr().String(), Weight: 7, Options: "disabled"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	cfg, _ := os.ReadFile(h.ConfigPath)
	for _, line := range []string{"    server-state-file " + state + "\n", "    load-server-state-from-file global\n", "    noreuseport\n", " disabled\n"} {
		if !strings.Contains(string(cfg), line) {
			t.Errorf("config lacks %q:\n%s", line, cfg)
		}
	}
	s := SampleHAProxy(ctx, h, "", 20*time.Millisecond)
	waitStat(t, h, "app,s1,", ",UP,")
	// The sampler's first sample before the flip: on a busy machine its
	// first reads may come late (seen once in CI, beside -race tests).
	for c := s.Now(); c.Samples == 0 || c.Last != 7; c = s.Now() {
		if ctx.Err() != nil {
			t.Fatalf("the sampler never saw s1 alone at 7: %s", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Flip: s1b live at weight 4, s1 in MAINT; save the state; reload.
	for _, cmd := range []string{"set weight app/s1b 4", "set server app/s1b state ready", "set server app/s1 state maint"} {
		if out, err := h.Exec(cmd); err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("%s: %q %v", cmd, out, err)
		}
	}
	waitStat(t, h, "app,s1b,", ",UP,")
	saved, err := h.Exec("show servers state")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte(saved), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	c := s.Stop()
	t.Log(c)
	// 7 (s1), then s1b ready at 4 (UP at once, or after its checks), then
	// s1 in MAINT: 4, kept over the reload.
	if c.Start != 7 || c.Last != 4 || c.Min > 4 || c.Max > 11 || c.Samples < 5 {
		t.Errorf("sampler: %s; want start 7, last 4, min at most 4, max at most 11", c)
	}
	stat, err := h.Exec("show stat app 4 -1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"app,s1,", "app,s1b,"} {
		line := lineWith(stat, want)
		t.Logf("after the reload: %s", line)
		if want == "app,s1," && !strings.Contains(line, ",MAINT,") {
			t.Errorf("s1 is not in MAINT after the reload: %s", line)
		}
		if want == "app,s1b," && (strings.Contains(line, "MAINT") || !strings.Contains(line, ",4,")) {
			t.Errorf("s1b is not live at weight 4 after the reload: %s", line)
		}
	}
	if bin, err := FindHAProxy(); err == nil {
		if out, err := exec.Command(bin, "-c", "-f", h.ConfigPath).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	}
}

func lineWith(stat, prefix string) string {
	for _, l := range strings.Split(stat, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func waitStat(t *testing.T, h *HAProxy, prefix, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if stat, err := h.Exec("show stat app 4 -1"); err == nil && strings.Contains(lineWith(stat, prefix), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never %s", prefix, want)
}
