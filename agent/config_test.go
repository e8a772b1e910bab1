package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/hook"
)

func TestTheDefaultsWithOneSlotAreValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Slots = []SlotConfig{{Name: "app-1", Backend: "app", Server: "app1", Container: "app-1"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateReportsEveryProblemNamingKeyAndValue(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HAProxy.Socket = "relative.sock"
	cfg.Drain.Mode = "slow"
	cfg.Drain.Timeout = 0
	cfg.Docker.Timeout = 500
	cfg.Drain.OnTimeout = "panic"
	cfg.Health.Path = "health"
	cfg.Health.Docker = "ignore"
	cfg.Health.DockerStartInterval = 5 * time.Millisecond
	cfg.HAProxy.MasterSocket = "master.sock"
	cfg.MinServing = -1
	cfg.AllowedImages = []string{"[bad"}
	cfg.Slots = []SlotConfig{
		{Name: "a", Backend: "app;x", Server: "s 1", Container: "c1", Port: 70000},
		{Name: "a", Backend: "app", Server: "s2", Container: "c1"},
		{Name: "", Backend: "app", Server: "s2", Container: "bad name"},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		"haproxy.socket: relative.sock", "drain.mode: slow", "drain.timeout: 0s", "docker.timeout: 500ns", "drain.on_timeout: panic",
		"haproxy.master_socket: master.sock", "health.path: health", "health.docker: ignore", "health.docker_start_interval: 5ms", "min_serving: -1", "allowed_images[0]: [bad",
		`slots[0].backend: "app;x"`, `slots[0].server: "s 1"`, "slots[0].port: 70000",
		"slots[1].name: a: duplicate", "slots[1].container: c1: two slots", `slots[2].name: ""`,
		"slots[2].server: app/s2: two slots", `slots[2].container: "bad name"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestNoSlotsIsAnError(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "slots") {
		t.Fatalf("got %v", err)
	}
}

func TestHooksAreValidatedAtTheTopLevelAndPerSlot(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Hooks.PreDrain = hook.Config{Command: []string{"bin/check", "--fast"}}
	cfg.Hooks.PostReplace = hook.Config{Command: []string{filepath.Join(dir, "missing")}, Timeout: 30}
	cfg.Slots = []SlotConfig{
		{Name: "a", Backend: "app", Server: "s1", Container: "c1", Hooks: HooksConfig{PreDrain: hook.Config{Command: []string{plain}}}},
		{Name: "b", Backend: "app", Server: "s2", Container: "c2", Hooks: HooksConfig{PostReplace: hook.Config{Command: []string{"/bin/true"}, Timeout: -1}}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid hooks accepted")
	}
	for _, want := range []string{
		`hooks.pre_drain.command[0]: "bin/check": want the absolute path`,
		"hooks.post_replace.command[0]: " + filepath.Join(dir, "missing") + ": cannot be run",
		"hooks.post_replace.timeout: 30ns: must be at least 1ms",
		"slots[0].hooks.pre_drain.command[0]: " + plain + ": is not executable",
		"slots[1].hooks.post_replace.timeout: -1ns",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestAHookWithAnAbsoluteExecutableIsValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Hooks.PostReplace = hook.Config{Command: []string{"/bin/true", "--fast"}}
	cfg.Slots = []SlotConfig{{Name: "a", Backend: "app", Server: "s1", Container: "c1",
		Hooks: HooksConfig{PreDrain: hook.Config{Command: []string{"/bin/true"}, Timeout: time.Millisecond}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if h := cfg.Slots[0].Hooks.or(cfg.Hooks); h.PreDrain.Timeout != time.Millisecond || h.PostReplace.Command[0] != "/bin/true" {
		t.Fatalf("effective hooks %+v", h)
	}
}

func TestMetricsListenMustBeHostPort(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:9101": true, ":9101": true, "[::1]:9101": true, "localhost:9101": true,
		"9101": false, "127.0.0.1": false, "127.0.0.1:0": false, "127.0.0.1:99999": false, "host:http": false, "a b:1": false,
	} {
		cfg := DefaultConfig()
		cfg.Slots = []SlotConfig{{Name: "app-1", Backend: "app", Server: "app1", Container: "app-1"}}
		cfg.Metrics.Listen = addr
		err := cfg.Validate()
		if ok && err != nil {
			t.Errorf("%q refused: %v", addr, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "metrics.listen: "+addr)) {
			t.Errorf("%q: got %v, want an error naming metrics.listen", addr, err)
		}
	}
}

func TestThePullTimeoutDefaultsToTenMinutesAndMustBePositive(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Docker.PullTimeout != 10*time.Minute {
		t.Errorf("default docker.pull_timeout %s, want 10m", cfg.Docker.PullTimeout)
	}
	cfg.Slots = []SlotConfig{{Name: "app-1", Backend: "app", Server: "app1", Container: "app-1"}}
	for _, d := range []time.Duration{0, -time.Second} {
		cfg.Docker.PullTimeout = d
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "docker.pull_timeout: "+d.String()+": must be positive") {
			t.Errorf("pull_timeout %s: got %v", d, err)
		}
	}
}
