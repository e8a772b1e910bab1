package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadFrom runs loadAgentConfig on a file the way `haroll status --config` would.
func loadFrom(t *testing.T, path string, args ...string) error {
	t.Helper()
	cmd := newStatus()
	if err := cmd.ParseFlags(append([]string{"--config", path}, args...)); err != nil {
		t.Fatal(err)
	}
	_, err := loadAgentConfig(cmd)
	return err
}

func TestEveryAgentConfigInConfigsParsesAndValidates(t *testing.T) {
	files, _ := filepath.Glob("../../configs/agent*.yaml")
	if len(files) == 0 {
		t.Fatal("no agent config in configs/")
	}
	for _, f := range files {
		if err := loadFrom(t, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnvironmentAndFlagsOverrideTheFile(t *testing.T) {
	p := writeConfig(t, "slots:\n  - {name: a, backend: app, server: s1, container: c1}\n")
	t.Setenv("HAROLL_DRAIN_TIMEOUT", "7s")
	t.Setenv("HAROLL_HAPROXY_SOCKET", "/env.sock")
	cmd := newStatus()
	if err := cmd.ParseFlags([]string{"--config", p, "--haproxy-socket", "/flag.sock"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadAgentConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Drain.Timeout != 7*time.Second || cfg.HAProxy.Socket != "/flag.sock" || cfg.MinServing != 1 {
		t.Fatalf("got %+v", cfg)
	}
}

func TestAnUnknownKeyIsAnError(t *testing.T) {
	p := writeConfig(t, "drian:\n  timeout: 5s\nslots:\n  - {name: a, backend: app, server: s1, container: c1}\n")
	if err := loadFrom(t, p); err == nil || !strings.Contains(err.Error(), "drian") {
		t.Fatalf("got %v, want an error naming the key", err)
	}
}

func TestAnInvalidValueNamesTheKey(t *testing.T) {
	p := writeConfig(t, "drain: {mode: fast, timeout: soon}\nslots: []\n")
	err := loadFrom(t, p)
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("got %v", err)
	}
	p = writeConfig(t, "drain: {mode: fast}\nslots: []\n")
	err = loadFrom(t, p)
	if err == nil || !strings.Contains(err.Error(), "drain.mode: fast") || !strings.Contains(err.Error(), "slots") {
		t.Fatalf("got %v", err)
	}
}

func TestHooksParseAtTheTopLevelAndPerSlot(t *testing.T) {
	p := writeConfig(t, `hooks:
  pre_drain: {command: ["/bin/true", "--fast"], timeout: 5s}
  post_replace: {command: [/bin/true]}
slots:
  - {name: a, backend: app, server: s1, container: c1}
  - name: b
    backend: app
    server: s2
    container: c2
    hooks: {post_replace: {command: [/bin/false, "two words"], timeout: 2s}}
`)
	cmd := newStatus()
	if err := cmd.ParseFlags([]string{"--config", p}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadAgentConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Hooks; h.PreDrain.Timeout != 5*time.Second || len(h.PreDrain.Command) != 2 || h.PostReplace.Timeout != 30*time.Second {
		t.Fatalf("top-level hooks %+v", h)
	}
	if h := cfg.Slots[1].Hooks.PostReplace; h.Timeout != 2*time.Second || h.Command[1] != "two words" {
		t.Fatalf("slot hook %+v", h)
	}
}

func TestAHookTimeoutWithoutAUnitIsAnError(t *testing.T) {
	p := writeConfig(t, "hooks:\n  pre_drain: {command: [/bin/true], timeout: 30}\nslots:\n  - {name: a, backend: app, server: s1, container: c1}\n")
	if err := loadFrom(t, p); err == nil || !strings.Contains(err.Error(), "hooks.pre_drain.timeout: 30ns") {
		t.Fatalf("got %v", err)
	}
}

func TestThePullTimeoutIsReadFromTheFileAndTheEnvironmentAndMustBePositive(t *testing.T) {
	p := writeConfig(t, "docker: {pull_timeout: 90s}\nslots:\n  - {name: a, backend: app, server: s1, container: c1}\n")
	cmd := newStatus()
	if err := cmd.ParseFlags([]string{"--config", p}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadAgentConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Docker.PullTimeout != 90*time.Second {
		t.Fatalf("docker.pull_timeout %s, want 90s", cfg.Docker.PullTimeout)
	}
	t.Setenv("HAROLL_DOCKER_PULL_TIMEOUT", "0s")
	err = loadFrom(t, p)
	if err == nil || !strings.Contains(err.Error(), "docker.pull_timeout: 0s") {
		t.Fatalf("got %v, want an error naming docker.pull_timeout: 0s", err)
	}
}
