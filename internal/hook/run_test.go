package hook

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/hook/hooktest"
)

func TestAHookThatExitsZeroPassesAndItsOutputIsKept(t *testing.T) {
	p := hooktest.Script(t, "echo checked \"$1\" \"$2\"\necho warn >&2\n")
	res, err := Run(context.Background(), Config{Command: []string{p, "--fast", "two words"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Output != "checked --fast two words\nwarn\n" || res.Truncated {
		t.Fatalf("got %+v", res)
	}
}

func TestAHookThatExitsThreeFailsWithTheCodeAndItsOutputInTheError(t *testing.T) {
	p := hooktest.Script(t, "echo 'smoke test: 503 from /health' >&2\nexit 3\n")
	res, err := Run(context.Background(), Config{Command: []string{p}}, nil)
	var herr *Error
	if !errors.As(err, &herr) {
		t.Fatalf("got %v, want an *Error", err)
	}
	if herr.ExitCode != 3 || res.ExitCode != 3 || herr.TimedOut {
		t.Fatalf("got %+v", herr)
	}
	for _, want := range []string{p, "exit code 3", "smoke test: 503 from /health"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q is not in %q", want, err)
		}
	}
}

func TestTheTimeoutKillsTheHookAndItsChildren(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The child holds no output open, so only the group kill ends it.
	p := hooktest.Script(t, "sleep 100 >/dev/null 2>&1 &\necho $! > "+pidFile+"\necho started\nsleep 100\n")
	begin := time.Now()
	_, err := Run(context.Background(), Config{Command: []string{p}, Timeout: 300 * time.Millisecond}, nil)
	took := time.Since(begin)
	var herr *Error
	if !errors.As(err, &herr) || !herr.TimedOut || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a timeout", err)
	}
	if !strings.Contains(err.Error(), "killed at its timeout of 300ms") || !strings.Contains(err.Error(), "started") {
		t.Errorf("message %q", err)
	}
	if took > 3*time.Second {
		t.Errorf("Run returned after %s, want about the 300ms timeout", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	assertGone(t, child)
}

func TestABackgroundChildLeftByAHookThatExitedIsKilled(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// This child keeps the hook's output open: Run waits waitDelay for it.
	p := hooktest.Script(t, "sleep 100 &\necho $! > "+pidFile+"\nexit 0\n")
	if _, err := Run(context.Background(), Config{Command: []string{p}}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	assertGone(t, child)
}

// assertGone waits briefly for pid to be gone (or a zombie, reaped by init).
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no child pid recorded")
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("child %d still runs", pid)
}

func TestTheEnvironmentIsExactlyPathAndWhatTheCallerNames(t *testing.T) {
	t.Setenv("SECRET_TOKEN", "must-not-leak")
	p := hooktest.Script(t, "env\n")
	res, err := Run(context.Background(), Config{Command: []string{p}},
		map[string]string{"HAROLL_SLOT": "app-1", "HAROLL_IMAGE": "registry/app:2", "PATH": "/evil"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(res.Output), "\n") {
		// sh itself exports PWD (and may add SHLVL, _).
		if k, _, _ := strings.Cut(line, "="); k != "PWD" && k != "SHLVL" && k != "_" {
			got = append(got, line)
		}
	}
	slices.Sort(got)
	want := []string{"HAROLL_IMAGE=registry/app:2", "HAROLL_SLOT=app-1", "PATH=" + Path}
	if !slices.Equal(got, want) {
		t.Fatalf("environment %q, want %q", got, want)
	}
}

func TestOnlyTheTailOfALongOutputIsKept(t *testing.T) {
	p := hooktest.Script(t, "i=0\nwhile [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done\nexit 1\n")
	res, err := Run(context.Background(), Config{Command: []string{p}}, nil)
	if err == nil {
		t.Fatal("exit 1 passed")
	}
	if len(res.Output) != OutputLimit || !res.Truncated || !strings.HasSuffix(res.Output, "line-1999\n") {
		t.Fatalf("kept %d bytes, truncated %v, ending %q", len(res.Output), res.Truncated, res.Output[len(res.Output)-20:])
	}
	if len(err.Error()) > 2*errorOutputLimit { // %q escapes each newline
		t.Errorf("the error quotes %d bytes", len(err.Error()))
	}
	if !strings.Contains(err.Error(), "line-1999") {
		t.Errorf("the error lacks the last line: %q", err)
	}
}

func TestAHookThatCannotStartFails(t *testing.T) {
	for name, cmd := range map[string][]string{
		"missing":  {filepath.Join(t.TempDir(), "nope")},
		"relative": {"true"},
		"empty":    nil,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Run(context.Background(), Config{Command: cmd}, nil)
			var herr *Error
			if !errors.As(err, &herr) || herr.ExitCode != -1 {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestACancelledContextKillsTheHook(t *testing.T) {
	p := hooktest.Script(t, "sleep 100\n")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := Run(ctx, Config{Command: []string{p}}, nil)
	var herr *Error
	if !errors.As(err, &herr) || herr.TimedOut || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
