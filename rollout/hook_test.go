package rollout

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haroll/haroll/internal/hook"
	"github.com/haroll/haroll/internal/hook/hooktest"
)

// hookConfig is a hook running a shell script with body (hooktest.Script).
func hookConfig(t *testing.T, body string) hook.Config {
	return hook.Config{Command: []string{hooktest.Script(t, body)}}
}

func TestAFailingPreHookTouchesNoHostAndWritesNoState(t *testing.T) {
	f := newFleet(t, 4, "a", "b")
	e := f.executor()
	e.StateFile = filepath.Join(t.TempDir(), "rollout.json")
	e.Hooks.Pre = hookConfig(t, "echo 'change freeze' >&2\nexit 2\n")
	var rec recorder
	e.Events = rec.add
	res, err := e.Run(t.Context(), hostNames(4), []string{"a", "b"}, mustStrategy(t, "2"))
	if !errors.Is(err, ErrHookFailed) || !errors.Is(err, ErrPreflight) {
		t.Fatalf("got %v, want ErrPreflight and ErrHookFailed", err)
	}
	for _, want := range []string{"pre:", "exit code 2", "change freeze"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q is not in %q", want, err)
		}
	}
	if calls := f.allCalls(); len(calls) != 0 {
		t.Fatalf("hosts touched: %v", calls)
	}
	if res.Totals.NotRun != 4 || res.Error == "" {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(e.StateFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused rollout wrote its state file: %v", err)
	}
	if evs := rec.kinds(EventHook); len(evs) != 1 || evs[0].Phase != "pre" || evs[0].Err == "" {
		t.Fatalf("hook events %+v", evs)
	}
}

func TestThePostHookIsToldHowTheRolloutEnded(t *testing.T) {
	for _, tc := range []struct {
		name               string
		fail               []string
		want, done, failed string
		wantErr            bool
	}{
		{"done", nil, "done", "4", "0", false},
		{"stopped by max_failures", []string{"h1"}, "stopped", "1", "1", true},
		{"failed in the last batch", []string{"h4"}, "failed", "3", "1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 4, "a")
			for _, h := range tc.fail {
				f.host(h).fail["a"] = true
			}
			out := filepath.Join(t.TempDir(), "env")
			e := f.executor()
			e.Hooks.Post = hookConfig(t, "env > "+out+"\n")
			_, err := e.Run(t.Context(), hostNames(4), []string{"a"}, mustStrategy(t, "2"))
			if (err != nil) != tc.wantErr || errors.Is(err, ErrHookFailed) {
				t.Fatalf("got %v", err)
			}
			b, rerr := os.ReadFile(out)
			if rerr != nil {
				t.Fatalf("the post hook did not run: %v", rerr)
			}
			for _, want := range []string{"HAROLL_PHASE=post\n", "HAROLL_IMAGE=app:v2\n", "HAROLL_RESULT=" + tc.want + "\n",
				"HAROLL_HOSTS_DONE=" + tc.done + "\n", "HAROLL_HOSTS_FAILED=" + tc.failed + "\n"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("%q is not in the hook's environment:\n%s", want, b)
				}
			}
		})
	}
}

func TestAFailingPostHookFailsADoneRolloutButUndoesNothing(t *testing.T) {
	f := newFleet(t, 2, "a")
	e := f.executor()
	e.StateFile = filepath.Join(t.TempDir(), "rollout.json")
	e.Hooks.Post = hookConfig(t, "echo 'chat webhook: 502'\nexit 1\n")
	res, err := e.Run(t.Context(), hostNames(2), []string{"a"}, mustStrategy(t, "2"))
	if !errors.Is(err, ErrHookFailed) || errors.Is(err, ErrFailed) {
		t.Fatalf("got %v, want ErrHookFailed only", err)
	}
	if !strings.Contains(err.Error(), "the rollout is done") || !strings.Contains(err.Error(), "chat webhook: 502") {
		t.Errorf("message %q", err)
	}
	if res.Totals.Done != 2 || res.Error != err.Error() {
		t.Fatalf("result %+v", res)
	}
	st, serr := ReadState(e.StateFile)
	if serr != nil || !st.Complete {
		t.Fatalf("state %+v, %v: the rollout itself is complete", st, serr)
	}
}

func TestRolloutHooksAreValidated(t *testing.T) {
	c := validConfig()
	c.Hooks.Pre = hook.Config{Command: []string{"notify.sh"}}
	c.Hooks.Post = hook.Config{Command: []string{"/bin/true"}, Timeout: 30}
	err := c.Validate()
	for _, want := range []string{`hooks.pre.command[0]: "notify.sh": want the absolute path`, "hooks.post.timeout: 30ns"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	c.Hooks.Pre.Command = []string{"/bin/true", "--fast"}
	c.Hooks.Post.Timeout = 0
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestAnInterruptedRolloutRunsItsPostHookAndAResumeRunsBothAgain(t *testing.T) {
	f := newFleet(t, 4, "a")
	path := statePath(t)
	log := filepath.Join(t.TempDir(), "hooks.log")
	hooks := Hooks{
		Pre:  hookConfig(t, "echo pre >> "+log+"\n"),
		Post: hookConfig(t, "echo post $HAROLL_RESULT $HAROLL_HOSTS_DONE >> "+log+"\n"),
	}
	e := f.executor()
	e.StateFile, e.Hooks = path, hooks
	ctx, events := cancelAfterBatch(t, 1)
	e.Events = events
	if _, err := e.Run(ctx, hostNames(4), []string{"a"}, mustStrategy(t, "2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	st, err := LoadResumable(path, "")
	if err != nil {
		t.Fatal(err)
	}
	e = f.executor()
	e.StateFile, e.Hooks = path, hooks
	if _, err := e.Resume(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	if got, want := string(b), "pre\npost stopped 2\npre\npost done 4\n"; got != want {
		t.Fatalf("hooks ran:\n%s\nwant:\n%s", got, want)
	}
}
