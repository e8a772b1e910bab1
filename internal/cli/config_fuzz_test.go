package cli

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/rollout"
	"github.com/haroll/haroll/runtime"
)

// addConfigSeeds seeds f with the files in configs/ matching pattern, then
// with bodies.
func addConfigSeeds(f *testing.F, pattern string, bodies ...string) {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join("..", "..", "configs", pattern))
	if len(files) == 0 {
		f.Fatalf("no configs/%s", pattern)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range bodies {
		f.Add([]byte(b))
	}
}

// clearHarollEnv blanks HAROLL_* variables for the fuzz run, so that only
// the fuzzed file configures: viper ignores an empty variable.
func clearHarollEnv(f *testing.F) {
	f.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "HAROLL_") {
			f.Setenv(k, "")
		}
	}
}

// writeFuzzConfig writes body as a YAML file under t.TempDir().
func writeFuzzConfig(t *testing.T, body []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func FuzzLoadAgentConfig(f *testing.F) {
	addConfigSeeds(f, "*.yaml",
		"slots:\n  - {name: a, backend: app, server: s1, container: c1}\n",
		"slots:\n  - {name: a, backend: app, server: s1, container: c1, port: 70000}\n",
		"drain: {mode: fast, timeout: soon}\nslots: []\n",
		"drian:\n  timeout: 5s\n",
		"haproxy: {socket: 127.0.0.1:9999, timeout: -1s}\nslots: [{name: a, backend: 'a;b', server: s, container: c}]\n",
		"allowed_images: ['[bad']\nslots: [{name: a, backend: b, server: s, container: c}]\n",
		"slots: {name: a}\n", "&a [*a]\n", "---\n", "")
	clearHarollEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		cmd := newStatus()
		if err := cmd.ParseFlags([]string{"--config", writeFuzzConfig(t, body)}); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadAgentConfig(cmd)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loadAgentConfig returned a config that does not validate: %v", err)
		}
		// A valid config makes an agent whose every slot names a server the
		// runtime API can be asked about.
		a := agent.New(cfg, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		slots := a.Slots()
		if len(slots) == 0 {
			t.Fatal("a valid config has no slot")
		}
		for _, s := range slots {
			if err := runtime.ValidateName("backend", s.Backend); err != nil {
				t.Fatalf("slot %q: %v", s.Name, err)
			}
			if err := runtime.ValidateName("server", s.Server); err != nil {
				t.Fatalf("slot %q: %v", s.Name, err)
			}
		}
	})
}

func FuzzLoadCoordinatorConfig(f *testing.F) {
	addConfigSeeds(f, "*.yaml",
		"hosts: [a.example.com:7443]\ntls: {cert: c.crt, key: c.key, ca: ca.crt}\nbatch: 2\n",
		"hosts: [a:1, a:1]\ntls: {cert: c, key: k, ca: ca}\ncanary: {hosts: 10%, weight: 5%, window: 30s}\nmax_failures: 5%\nslots: [web, api]\n",
		"hosts: [a:0, ':1', 'a b:2']\nbatch: 0\ncanary: {hosts: 101%, weight: 0%, window: 0s, max_error_rate: 2}\nmax_failures: -1\n",
		"hosts: []\ntls: {cert: c, key: k, ca: ca}\n",
		"hosts: [a:1]\ntls: {cert: c, key: k, ca: ca}\nslots: ['', 'a;b', x, x]\nstep_timeout: 0s\n",
		"insecure: true\nhosts: [127.0.0.1:1]\n",
		"batch: [1]\n", "")
	clearHarollEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		cmd := newRollout()
		if err := cmd.ParseFlags([]string{"--config", writeFuzzConfig(t, body)}); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadCoordinatorConfig(cmd)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loadCoordinatorConfig returned a config that does not validate: %v", err)
		}
		if cfg.Insecure {
			t.Fatal("the file turned on plaintext, which only --insecure may")
		}
		strategy, _, err := cfg.Strategy()
		if err != nil {
			t.Fatalf("Strategy of a valid config: %v", err)
		}
		if cfg.Inventory != "" {
			return // the inventory is a file of the fuzzed name: not read here
		}
		// What `haroll rollout --dry-run` does next: a valid config with
		// distinct hosts always gives a plan.
		hosts, err := cfg.ReadHosts()
		if err != nil {
			if !strings.Contains(err.Error(), "already listed") {
				t.Fatalf("ReadHosts of valid hosts %q: %v", cfg.Hosts, err)
			}
			return
		}
		slots := cfg.Slots
		if len(slots) == 0 {
			slots = []string{"every-slot"}
		}
		if _, err := rollout.NewPlan(hosts, slots, strategy); err != nil {
			t.Fatalf("a valid config gives no plan: %v", err)
		}
	})
}
