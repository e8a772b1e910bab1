package hook

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Path is the only PATH a hook gets; the rest of its environment is what
// the caller passes to Run.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// OutputLimit is how much of a hook's output (stdout and stderr together,
// interleaved as written) is kept: the last OutputLimit bytes.
const OutputLimit = 4096

// errorOutputLimit is how much of the kept output an Error's message quotes.
const errorOutputLimit = 1024

// waitDelay is how long a hook's background processes may keep its output
// open after it exited before they are killed with its process group.
const waitDelay = time.Second

// Result is what a finished run left behind.
type Result struct {
	// Output is the last OutputLimit bytes of stdout and stderr.
	Output string
	// Truncated says that more than OutputLimit bytes were written.
	Truncated bool
	// ExitCode is the hook's exit status; -1 when it did not exit by itself
	// (killed at its timeout, by a signal, or never started).
	ExitCode int
	Duration time.Duration
}

// Error is a run that failed: the hook did not start, exited non-zero, or
// was killed (at its timeout, or because ctx ended). Unwrap gives
// context.DeadlineExceeded for a timeout, ctx's error when ctx ended, the
// *exec.ExitError of a non-zero exit, or the start error.
type Error struct {
	Command  string // the executable
	ExitCode int    // as Result.ExitCode
	TimedOut bool
	Timeout  time.Duration
	Duration time.Duration
	Output   string // as Result.Output
	Err      error
}

func (e *Error) Error() string {
	var what string
	switch {
	case e.TimedOut:
		what = fmt.Sprintf("killed at its timeout of %s", e.Timeout)
	case e.ExitCode > 0:
		what = fmt.Sprintf("exit code %d after %s", e.ExitCode, e.Duration.Round(time.Millisecond))
	default:
		what = e.Err.Error()
	}
	out := strings.TrimSpace(e.Output)
	if out == "" {
		return fmt.Sprintf("%s: %s, no output", e.Command, what)
	}
	if len(out) > errorOutputLimit {
		out = "..." + out[len(out)-errorOutputLimit:]
	}
	return fmt.Sprintf("%s: %s; output: %q", e.Command, what, out)
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs c's command with PATH=Path and env as its only environment, in
// its own process group, stdin from /dev/null and the working directory /.
// It returns when the hook has exited: with an *Error unless it exited 0
// within c's timeout. At the timeout, or when ctx ends, the whole process
// group is killed (SIGKILL), so the hook's children die with it; after the
// hook exits, whatever is left of its group is killed too. Run with no
// command, or a relative one, is an *Error: hooks are never looked up in a
// PATH and never handed to a shell.
func Run(ctx context.Context, c Config, env map[string]string) (Result, error) {
	res := Result{ExitCode: -1}
	if !c.Set() || !filepath.IsAbs(c.Command[0]) {
		return res, &Error{Command: strings.Join(c.Command, " "), ExitCode: -1,
			Err: errors.New("not started: a hook needs the absolute path of an executable")}
	}
	timeout := c.timeout()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &tail{limit: OutputLimit}
	cmd := exec.CommandContext(rctx, c.Command[0], c.Command[1:]...)
	cmd.Env = environ(env)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = waitDelay
	start := time.Now()
	err := cmd.Run()
	res.Duration = time.Since(start)
	if cmd.Process != nil {
		// The leader is gone; what it left running (`sleep 100 &`) goes too.
		_ = killGroup(cmd.Process.Pid)
	}
	res.Output, res.Truncated = out.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	// Exited 0, but a background child kept its output open past waitDelay:
	// the hook itself succeeded.
	if err == nil || (errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success()) {
		return res, nil
	}
	herr := &Error{Command: c.Command[0], ExitCode: res.ExitCode, Timeout: timeout, Duration: res.Duration, Output: res.Output, Err: err}
	switch {
	case ctx.Err() != nil:
		herr.Err = fmt.Errorf("killed: %w", ctx.Err())
	case rctx.Err() != nil:
		herr.TimedOut, herr.Err = true, context.DeadlineExceeded
	case cmd.ProcessState == nil:
		herr.Err = fmt.Errorf("not started: %w", err)
	}
	return res, herr
}

// killGroup sends SIGKILL to the process group pgid leads.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// environ is PATH=Path and env, sorted by name.
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env)+1)
	out = append(out, "PATH="+Path)
	for k, v := range env {
		if k != "PATH" {
			out = append(out, k+"="+v)
		}
	}
	slices.Sort(out[1:])
	return out
}

// tail keeps the last limit bytes written to it.
type tail struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	written int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.written += int64(len(p))
	if len(p) >= t.limit {
		t.buf = append(t.buf[:0], p[len(p)-t.limit:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns what is kept and whether anything was dropped.
func (t *tail) String() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf), t.written > int64(len(t.buf))
}
