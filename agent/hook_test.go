package agent

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/haroll/haroll/internal/hook"
	"github.com/haroll/haroll/internal/hook/hooktest"
)

// hookConfig is a hook running a shell script with body (hooktest.Script).
func hookConfig(t *testing.T, body string) hook.Config {
	return hook.Config{Command: []string{hooktest.Script(t, body)}}
}

// readEnv reads a file of NAME=value lines (a hook's `env` output), leaving
// out what sh adds itself.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		if k != "PWD" && k != "SHLVL" && k != "_" {
			env[k] = v
		}
	}
	return env
}

func TestAFailingPreDrainHookTouchesNothing(t *testing.T) {
	w := newWorld(t)
	slots := threeSlots(t, w)
	a := newTestAgent(t, w, slots...)
	a.cfg.Hooks.PreDrain = hookConfig(t, "echo 'deploy freeze until 18:00' >&2\nexit 3\n")
	var phases []Phase
	var hookEv Event
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		phases = append(phases, e.Phase)
		if e.Phase == PhasePreDrain {
			hookEv = e
		}
	})
	if !errors.Is(err, ErrHookFailed) {
		t.Fatalf("got %v, want ErrHookFailed", err)
	}
	for _, want := range []string{"pre_drain of slot app-1", "exit code 3", "deploy freeze until 18:00"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q is not in %q", want, err)
		}
	}
	if calls := w.mutations(); len(calls) != 0 {
		t.Fatalf("a failed pre_drain hook changed HAProxy or Docker: %q", calls)
	}
	if rep.Slots[0].Result != ResultRolledBack || rep.Slots[1].Result != ResultNotRun {
		t.Fatalf("results %+v", rep.Slots)
	}
	if hookEv.Err == "" || phases[0] != PhasePreDrain {
		t.Fatalf("phases %v, hook event %+v", phases, hookEv)
	}
	if e, err := (Journal{dir: a.cfg.StateDir}).Read(); err != nil || e != nil {
		t.Fatalf("journal %+v, %v: want none", e, err)
	}
}

func TestAFailingPostReplaceHookRollsBackToTheOldContainerAtItsWeight(t *testing.T) {
	w := newWorld(t)
	slots := threeSlots(t, w)
	a := newTestAgent(t, w, slots...)
	seen := filepath.Join(t.TempDir(), "journal-seen.json")
	a.cfg.Hooks.PostReplace = hookConfig(t, "cp "+filepath.Join(a.cfg.StateDir, journalFile)+" "+seen+"\necho 'smoke: 500 on /cart'\nexit 1\n")
	oldID := w.byName("app-1").ID
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, ErrHookFailed) || !strings.Contains(err.Error(), "smoke: 500 on /cart") {
		t.Fatalf("got %v, want ErrHookFailed with the hook's output", err)
	}
	if r := rep.Slots[0]; r.Result != ResultRolledBack {
		t.Fatalf("slot app-1: %+v", r)
	}
	c := w.byName("app-1")
	if c.ID != oldID || !c.Running || c.Image != "app:v1" {
		t.Fatalf("app-1 is %+v, want the old container running under its name", c)
	}
	if len(w.ctrs) != 3 {
		t.Fatalf("%d containers, want 3: the new one removed", len(w.ctrs))
	}
	if st := w.servers["app/srv-app-1"].stat; st.Weight != 7 {
		t.Fatalf("weight %d, want 7", st.Weight)
	}
	// The new container never had its weight: the only restore comes after
	// it was removed.
	calls := w.mutations()
	restore := slices.Index(calls, "SetWeight app/srv-app-1 7")
	removed := slices.Index(calls, "Remove app-1")
	if removed < 0 || restore < removed || slices.Index(calls[restore+1:], "SetWeight app/srv-app-1 7") >= 0 {
		t.Fatalf("want the new container removed before the only restore: %q", calls)
	}
	// While the hook ran, a crash would have rolled back: not yet proven.
	var e Entry
	if b, err := os.ReadFile(seen); err != nil || json.Unmarshal(b, &e) != nil {
		t.Fatalf("the hook did not see the journal: %v", err)
	}
	if e.Proven || !e.Maint || e.NewID == "" {
		t.Fatalf("journal during post_replace: %+v, want not proven, the server in maintenance", e)
	}
}

func TestAFailingPostReplaceHookStartedFirstPointsHAProxyBack(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	w.startFirst()
	a := newTestAgent(t, w, slot)
	a.cfg.Hooks.PostReplace = hookConfig(t, "exit 1\n")
	oldID := w.byName("app-1").ID
	oldAddr := w.servers["app/srv-app-1"].stat.Addr
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); !errors.Is(err, ErrHookFailed) {
		t.Fatalf("got %v", err)
	}
	if c := w.byName("app-1"); c.ID != oldID || !c.Running {
		t.Fatalf("app-1 is %+v", c)
	}
	if st := w.servers["app/srv-app-1"].stat; st.Addr != oldAddr || st.Weight != 7 {
		t.Fatalf("server at %s weight %d, want %s weight 7", st.Addr, st.Weight, oldAddr)
	}
	if len(w.ctrs) != 1 {
		t.Fatalf("%d containers, want 1", len(w.ctrs))
	}
}

func TestHooksThatPassRunFirstAndAfterTheGateWithTheirEnvironment(t *testing.T) {
	w := newWorld(t)
	w.ephemeral = true
	slot := w.addSlot("app-1", 7)
	a := newTestAgent(t, w, slot)
	dir := t.TempDir()
	a.cfg.Hooks.PreDrain = hookConfig(t, "env > "+filepath.Join(dir, "pre")+"\n")
	a.cfg.Hooks.PostReplace = hookConfig(t, "env > "+filepath.Join(dir, "post")+"\n")
	var phases []Phase
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		phases = append(phases, e.Phase)
	}); err != nil {
		t.Fatal(err)
	}
	gate := slices.Index(phases, PhaseGate)
	if phases[0] != PhasePreDrain || gate < 1 || phases[gate-1] != PhasePostReplace || phases[gate+1] != PhaseRestore {
		t.Fatalf("phases %v: want pre_drain first, post_replace right before the gate (in maintenance), then restore", phases)
	}
	c := w.byName("app-1")
	base := map[string]string{
		"PATH": hook.Path, "HAROLL_SLOT": "app-1", "HAROLL_BACKEND": "app", "HAROLL_SERVER": "srv-app-1",
		"HAROLL_CONTAINER": "app-1", "HAROLL_IMAGE": "app:v2", "HAROLL_OLD_IMAGE": "app:v1",
	}
	pre := maps.Clone(base)
	pre["HAROLL_PHASE"] = "pre_drain"
	if got := readEnv(t, filepath.Join(dir, "pre")); !maps.Equal(got, pre) {
		t.Errorf("pre_drain environment\n%v\nwant\n%v", got, pre)
	}
	post := maps.Clone(base)
	post["HAROLL_PHASE"] = "post_replace"
	post["HAROLL_NEW_CONTAINER_ID"] = c.ID
	post["HAROLL_NEW_ADDR"] = w.servers["app/srv-app-1"].stat.Addr // the new port
	if got := readEnv(t, filepath.Join(dir, "post")); !maps.Equal(got, post) {
		t.Errorf("post_replace environment\n%v\nwant\n%v", got, post)
	}
}

func TestASlotsOwnHookReplacesTheTopLevelOne(t *testing.T) {
	w := newWorld(t)
	s1, s2 := w.addSlot("app-1", 7), w.addSlot("app-2", 3)
	dir := t.TempDir()
	s2.Hooks.PreDrain = hookConfig(t, "touch "+filepath.Join(dir, "own-"+"$HAROLL_SLOT")+"\n")
	a := newTestAgent(t, w, s1, s2)
	a.cfg.Hooks.PreDrain = hookConfig(t, "touch "+filepath.Join(dir, "top-"+"$HAROLL_SLOT")+"\n")
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	var ran []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		ran = append(ran, e.Name())
	}
	if want := []string{"own-app-2", "top-app-1"}; !slices.Equal(ran, want) {
		t.Fatalf("hooks that ran: %v, want %v", ran, want)
	}
}
