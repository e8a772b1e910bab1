package integration

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
)

// TestARedeployOfAWorkingImageTakesOverASlotWhoseOldContainerWasRemoved
// removes a slot's old container (as `docker rm`, or --rm, would) while a
// replacement by an image that never becomes ready runs, so that its
// rollback cannot bring the old container back; `haroll recover --status`
// then shows the wedged slot, and a redeploy of a working image takes it
// over. The load sees no failure at any point, and the host ends with one
// container per slot, every server UP at its weight, no journal.
func TestARedeployOfAWorkingImageTakesOverASlotWhoseOldContainerWasRemoved(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	ctx := context.Background()
	ctrs, err := h.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldID := ctrs[0].ID
	res := underLoad(t, h, func() {
		cli := exec.Command(harollBin, "redeploy", "--config", h.AgentYAML, "--image", images.Broken, "--slot", "app-1")
		stdout, err := cli.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cli.Stderr = cli.Stdout
		if err := cli.Start(); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		removed := false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			if f := strings.Fields(line); !removed && len(f) > 1 && f[0] == "app-1" && f[1] == "stop" {
				if b, err := exec.Command("docker", "rm", "-f", oldID).CombinedOutput(); err != nil {
					t.Fatalf("docker rm -f %s: %v: %s", oldID, err, b)
				}
				removed = true
			}
		}
		err = cli.Wait()
		t.Logf("haroll redeploy %s:\n%s", images.Broken, out.String())
		if err == nil || !removed || !strings.Contains(out.String(), "is gone") {
			t.Fatalf("redeploy of %s with the old container removed: %v (removed %v), want a failure that says the old container is gone", images.Broken, err, removed)
		}
	})
	if res.Failed != 0 || res.SlowFailed != 0 || res.Dropped != 0 {
		t.Errorf("lost requests while the slot wedged: %s %v", res, res.Errors)
	}
	out, err := haroll(t, "recover", "--status", "--config", h.AgentYAML)
	if err != nil || !containsAll(out, "WEDGED", "old container", "gone", "new container", images.Broken, "exited", "admin maint", "haroll redeploy --slot app-1") {
		t.Fatalf("recover --status: %v", err)
	}
	if out, err := haroll(t, "status", "--config", h.AgentYAML); err != nil || !strings.Contains(out, "WEDGED") {
		t.Errorf("status does not show the wedged slot: %v", err)
	}
	start := time.Now()
	res = underLoad(t, h, func() {
		if _, err := haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--slot", "app-1"); err != nil {
			t.Fatalf("redeploy of %s over the wedged slot: %v", images.V2, err)
		}
	})
	t.Logf("take-over took %s", time.Since(start).Round(time.Millisecond))
	if res.Failed != 0 || res.SlowFailed != 0 || res.Dropped != 0 {
		t.Errorf("lost requests during the take-over: %s %v", res, res.Errors)
	}
	assertConsistent(t, h)
	if ctrs, err := h.Containers(ctx); err != nil || ctrs[0].Image != images.V2 {
		t.Errorf("app-1 runs %v (%v), want %s", ctrs, err, images.V2)
	}
	if out, err := haroll(t, "recover", "--status", "--config", h.AgentYAML); err != nil || !strings.Contains(out, "nothing pending") {
		t.Errorf("recover --status after the take-over: %v", err)
	}
}
