package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/haroll/haroll/integration/harness"
)

// A post_replace hook runs when the new container is booted, while its
// server is still in maintenance (before the gate); one that fails must roll
// the slot back as a failed gate does, without the new container ever
// serving.
func TestAPostReplaceHookThatFailsRollsTheSlotBack(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startHost(t, harness.FixedPorts)
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	// A file the agent executes directly; it lingers a second under the
	// load, and fails.
	script := filepath.Join(dir, "smoke-test")
	body := "#!/bin/sh\necho \"$HAROLL_PHASE $HAROLL_SLOT $HAROLL_NEW_ADDR $HAROLL_NEW_CONTAINER_ID\" > " + seen +
		"\nsleep 1\necho 'smoke test: /checkout answered 500' >&2\nexit 1\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := h.AppendAgentConfig("hooks:\n  post_replace: {command: [" + script + "], timeout: 10s}\n"); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, h)
	var out string
	res := underLoad(t, h, func() {
		var err error
		out, err = haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2)
		if err == nil {
			t.Error("redeploy succeeded although the post_replace hook failed")
		}
	})
	assertNoLoss(t, res)
	if n := res.ByVersion["v2"]; n != 0 {
		t.Errorf("the new container served %d requests before its post_replace hook passed", n)
	}
	if !slices.Equal(res.LastVersions, []string{"v1"}) {
		t.Errorf("versions served at the end: %v, want only v1", res.LastVersions)
	}
	assertServing(t, h, images.V1) // every server UP at its original weight, no extra container
	if after := takeSnapshot(t, h); !slices.Equal(after.containers, before.containers) {
		t.Errorf("containers changed: %v -> %v", before.containers, after.containers)
	}
	b, err := os.ReadFile(seen)
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	addrs, err := h.Addrs(context.Background()) // fixed ports: the new container had the old one's
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 4 || f[0] != "post_replace" || f[1] != "app-1" || f[2] != addrs[0] || len(f[3]) != 64 || f[3] == before.containers[0].ID {
		t.Errorf("the hook was told %q", b)
	}
	for _, want := range []string{"post_replace", "hook failed", "smoke test: /checkout answered 500", "rolled_back"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
}
