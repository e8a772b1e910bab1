package integration

import (
	"context"
	"slices"
	"testing"

	"github.com/haroll/haroll/integration/harness"
)

// TestAnHAProxyReloadDuringTheDrainLosesNothing reloads HAProxy (master-worker,
// SIGUSR2) while haroll drains a slot under load. The reload gives the server
// its configured weight back; haroll must notice, drain it again, and wait
// for the old worker's sessions before it stops the container.
func TestAnHAProxyReloadDuringTheDrainLosesNothing(t *testing.T) {
	requireDeps(t)
	h := startHost(t, harness.FixedPorts)
	var out string
	reloads := 0
	res := underLoad(t, h, func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			var err error
			out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--log-level", "info")
			if err != nil {
				t.Errorf("redeploy failed: %v", err)
			}
		}()
		// Reload once while slot 1 drains, and once while slot 2 drains.
		for _, i := range []int{0, 1} {
			waitDrainStarts(t, h, i)
			if err := h.HAProxy.Reload(context.Background()); err != nil {
				t.Error(err)
			}
			reloads++
		}
		<-done
	})
	if reloads != 2 {
		t.Fatalf("reloaded %d times, want 2", reloads)
	}
	// A reload itself closes the client keep-alive connections the old
	// worker held: a request sent on one at that instant gets EOF, with or
	// without haroll (about 1 per reload in a plain reload under this load).
	// Anything else — a 5xx, a refused connection — is haroll's to prevent.
	eofs := failuresWhere(res, func(desc string) bool { return desc == "EOF" })
	if res.Failed+res.SlowFailed != eofs || eofs > int64(reloads) || res.Dropped != 0 {
		t.Errorf("lost requests beyond the reloads' own: %s %v", res, res.Errors)
	}
	t.Logf("requests failed by the reloads themselves (EOF on a closing keep-alive connection): %d", eofs)
	if !slices.Equal(res.LastVersions, []string{"v2"}) {
		t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
	}
	assertServing(t, h, images.V2)
	if !containsAll(out, "haproxy was reloaded or restarted") {
		t.Error("haroll did not log the reload")
	}
}
