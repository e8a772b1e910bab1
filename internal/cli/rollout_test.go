package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/rollout"
)

// loadCoordinatorFrom runs loadCoordinatorConfig the way `haroll rollout` would.
func loadCoordinatorFrom(t *testing.T, path string, args ...string) error {
	t.Helper()
	cmd := newRollout()
	if err := cmd.ParseFlags(append([]string{"--config", path}, args...)); err != nil {
		t.Fatal(err)
	}
	_, err := loadCoordinatorConfig(cmd)
	return err
}

func TestEveryCoordinatorConfigInConfigsParsesAndValidates(t *testing.T) {
	files, _ := filepath.Glob("../../configs/coordinator*.yaml")
	if len(files) == 0 {
		t.Fatal("no coordinator config in configs/")
	}
	for _, f := range files {
		if err := loadCoordinatorFrom(t, f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func writeCoordinatorConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "coordinator.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tenLoopbackHosts is a coordinator config of 10 agents on loopback.
func tenLoopbackHosts(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("tls: {cert: c.crt, key: c.key, ca: ca.crt}\nhosts:\n")
	for i := range 10 {
		fmt.Fprintf(&b, "  - 127.0.0.1:%d\n", 7441+i)
	}
	return writeCoordinatorConfig(t, b.String())
}

func TestEnvironmentAndFlagsOverrideTheCoordinatorFile(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [a.example.com:7443]\ntls: {cert: c.crt, key: c.key, ca: ca.crt}\nbatch: 2\n")
	t.Setenv("HAROLL_STEP_TIMEOUT", "3m")
	t.Setenv("HAROLL_MAX_FAILURES", "10%")
	cmd := newRollout()
	if err := cmd.ParseFlags([]string{"--config", p, "--batch", "50%", "--slot", "web-2", "--slot", "web-1"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadCoordinatorConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Batch != "50%" || cfg.MaxFailures != "10%" || cfg.StepTimeout != 3*time.Minute ||
		cfg.ConnectTimeout != 5*time.Second || strings.Join(cfg.Slots, ",") != "web-2,web-1" {
		t.Fatalf("got %+v", cfg)
	}
}

func TestACoordinatorConfigProblemNamesTheKey(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [noport]\nbatch: 0%\nbach: 3\n")
	if err := loadCoordinatorFrom(t, p); err == nil || !strings.Contains(err.Error(), "bach") {
		t.Fatalf("got %v, want the unknown key named", err)
	}
	p = writeCoordinatorConfig(t, "hosts: [noport]\nbatch: 0%\n")
	err := loadCoordinatorFrom(t, p)
	for _, want := range []string{`hosts[0]: "noport"`, `batch: invalid size "0%"`, "tls.cert: empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

// runRollout runs `haroll rollout` with args and returns its stdout.
func runRollout(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"rollout"}, args...))
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func TestADryRunWithSlotsPrintsThePlanWithoutAnyAgent(t *testing.T) {
	p := tenLoopbackHosts(t)
	out, err := runRollout(t, "--config", p, "--image", "app:v2", "--dry-run", "--slot", "app-1", "--slot", "app-2", "--canary", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"plan: 10 host(s) in 4 batch(es) (batch 35%, canary 1)", "app-1 -> app-2",
		"batch 1/4 (canary): 1 host(s): 127.0.0.1:7441\n", "batch 2/4: 4 host(s)", "batch 4/4: 1 host(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestInsecureIsRefusedForAHostOffLoopback(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [127.0.0.1:7443, web-1.example.com:7443]\n")
	_, err := runRollout(t, "--config", p, "--image", "app:v2", "--insecure")
	if err == nil || !strings.Contains(err.Error(), "web-1.example.com:7443") || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("got %v, want a refusal naming the remote host only", err)
	}
}

func TestARolloutWithAnUnreachableAgentFailsBeforeTouchingAny(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [127.0.0.1:1]\nconnect_timeout: 2s\n")
	out, err := runRollout(t, "--config", p, "--image", "app:v2", "--insecure", "--slot", "app-1")
	if err == nil || !strings.Contains(err.Error(), "no host was touched") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("got %v\n%s", err, out)
	}
}

func TestRolloutNeedsAnImageAndAKnownOutput(t *testing.T) {
	p := tenLoopbackHosts(t)
	if _, err := runRollout(t, "--config", p); err == nil || !strings.Contains(err.Error(), "--image") {
		t.Errorf("got %v", err)
	}
	if _, err := runRollout(t, "--config", p, "--image", "x", "--output", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("got %v", err)
	}
}

func TestStepTimeoutAndStateFileFlagsOverrideTheCoordinatorFile(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [a.example.com:7443]\ntls: {cert: c.crt, key: c.key, ca: ca.crt}\nstate_file: /srv/a.json\n")
	cmd := newRollout()
	if err := cmd.ParseFlags([]string{"--config", p, "--step-timeout", "30s", "--state-file", "/srv/b.json"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadCoordinatorConfig(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StepTimeout != 30*time.Second || cfg.StateFile != "/srv/b.json" {
		t.Fatalf("got step_timeout %s, state_file %s", cfg.StepTimeout, cfg.StateFile)
	}
	p = writeCoordinatorConfig(t, "hosts: [a.example.com:7443]\ntls: {cert: c.crt, key: c.key, ca: ca.crt}\n")
	cmd = newRollout()
	if err := cmd.ParseFlags([]string{"--config", p}); err != nil {
		t.Fatal(err)
	}
	if cfg, err = loadCoordinatorConfig(cmd); err != nil || cfg.StateFile != rollout.DefaultStateFile {
		t.Fatalf("state_file %q, %v: want the default %s", cfg.StateFile, err, rollout.DefaultStateFile)
	}
}

// writeState writes a state file of a rollout of app:v2 over one host.
func writeState(t *testing.T, complete bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rollout.json")
	st := &rollout.State{Version: 1, Image: "app:v2", MaxFailures: "0", Hosts: []string{"127.0.0.1:1"}, Slots: []string{"app-1"},
		Plan:     rollout.Plan{Batches: []rollout.Batch{{Hosts: []string{"127.0.0.1:1"}, Steps: []rollout.Step{{Slot: "app-1", Hosts: []string{"127.0.0.1:1"}}}}}},
		Complete: complete, Outcome: rollout.HostDone}
	if err := rollout.WriteState(path, st); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResumeIsRefusedWithAClearReason(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [127.0.0.1:1]\nconnect_timeout: 1s\n")
	missing := filepath.Join(t.TempDir(), "none.json")
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"no state file":     {[]string{"--state-file", missing}, []string{"nothing to resume", missing}},
		"a complete one":    {[]string{"--state-file", writeState(t, true)}, []string{"nothing to resume", "is complete", "app:v2"}},
		"another image":     {[]string{"--state-file", writeState(t, false), "--image", "app:v3"}, []string{"app:v3", "is of app:v2"}},
		"a new batch size":  {[]string{"--state-file", writeState(t, false), "--batch", "2"}, []string{"--batch cannot change a resumed rollout"}},
		"with a dry run":    {[]string{"--state-file", writeState(t, false), "--dry-run"}, []string{"--resume and --dry-run"}},
		"other slots":       {[]string{"--state-file", writeState(t, false), "--slot", "app-2"}, []string{"--slot cannot change"}},
		"an agent gone":     {[]string{"--state-file", writeState(t, false)}, []string{"no host was touched", "127.0.0.1:1"}},
		"matching --image ": {[]string{"--state-file", writeState(t, false), "--image", "app:v2"}, []string{"no host was touched"}},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runRollout(t, append([]string{"--config", p, "--insecure", "--resume"}, tc.args...)...)
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("got %v, want %q in it\n%s", err, want, out)
				}
			}
		})
	}
}
