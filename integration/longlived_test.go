package integration

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
)

// holdSessions opens n requests that last a minute through h's frontend and
// returns how many ended (cut or otherwise) so far.
func holdSessions(t *testing.T, h *harness.Host, n int) *atomic.Int64 {
	t.Helper()
	var ended atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range n {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL("/slow?ms=60000"), nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			ended.Add(1)
		}()
	}
	time.Sleep(500 * time.Millisecond)
	return &ended
}

func redeployWithEnv(t *testing.T, h *harness.Host, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(harollBin, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--slot", "app-1")
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("haroll redeploy (%v):\n%s", env, out.String())
	return out.String(), err
}

func TestSessionsThatNeverEndFailTheDrainCleanlyByDefault(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	before := takeSnapshot(t, h)
	holdSessions(t, h, 15)
	out, err := redeployWithEnv(t, h, "HAROLL_DRAIN_TIMEOUT=2s")
	if err == nil || !strings.Contains(out, "drain timed out") {
		t.Fatalf("err %v: want a drain timeout", err)
	}
	after := takeSnapshot(t, h)
	if !slices.Equal(after.servers, before.servers) || !slices.Equal(after.containers, before.containers) {
		t.Errorf("the slot was not restored:\nbefore %v\nafter  %v", before, after)
	}
}

func TestOnTimeoutShutdownCutsTheSessionsAndReplaces(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	ended := holdSessions(t, h, 15)
	out, err := redeployWithEnv(t, h, "HAROLL_DRAIN_TIMEOUT=2s", "HAROLL_DRAIN_ON_TIMEOUT=shutdown")
	if err != nil || !strings.Contains(out, "sessions shut down") {
		t.Fatalf("err %v: want the sessions shut down and the slot replaced", err)
	}
	if ended.Load() == 0 {
		t.Error("no long session was cut")
	}
	ctrs, err := h.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ctrs[0].Image != images.V2 {
		t.Errorf("app-1 runs %s, want %s", ctrs[0].Image, images.V2)
	}
	stats, err := h.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats[0].Weight != weights[0] || !stats[0].FullyUp() {
		t.Errorf("s1: %+v", stats[0])
	}
}
