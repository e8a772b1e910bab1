package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
)

// healthPollInterval is how often WaitHealthy inspects the container; an inspect costs the daemon
// little, and Docker's own checks run far less often.
const healthPollInterval = 50 * time.Millisecond

// execPollInterval is how often a run of the healthcheck command is asked whether it has ended.
const execPollInterval = 25 * time.Millisecond

// defaultHealthTimeout bounds one run of a healthcheck that sets no timeout, as Docker does.
const defaultHealthTimeout = 30 * time.Second

// WaitHealthy waits until container id is healthy and returns nil. A container without a healthcheck
// counts as healthy as soon as it runs.
//
// Docker runs a container's first healthcheck one HEALTHCHECK interval after the start (30 s unless
// the image says otherwise), however soon the app is ready. With startInterval > 0, WaitHealthy does
// not wait for it: it also runs the healthcheck's own command in the container itself (an exec, as
// Docker does, with the container's user, environment and workdir) every startInterval, one run at a
// time, and the first run that exits 0 within the healthcheck's timeout ends the wait, once a fresh
// inspect shows the same container still running and not reported unhealthy. A run that fails, cannot
// start (a CMD-SHELL check in an image without /bin/sh) or outlasts the timeout only means "not yet";
// the API cannot kill a run, so one that hangs is waited for before the next. Docker's own reports
// still decide the rest: it returns ErrUnhealthy when Docker reports the container unhealthy,
// ErrExited when it is not running (it exited, is restarting after a crash, was never started, or
// restarted while a run passed), with the exit code and the last healthcheck output,
// ErrContainerNotFound when it is gone, and ctx's error, with the last health status and the outcome
// of haroll's last run, when ctx ends first.
func (c *Client) WaitHealthy(ctx context.Context, id string, startInterval time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the early runs
	var early *earlyChecks
	var startedAt string // of the container the early runs run in
	ticker := time.NewTicker(healthPollInterval)
	defer ticker.Stop()
	last := "unknown"
	gaveUp := func() error {
		return fmt.Errorf("wait for container %s to become healthy: %w (last health status: %s%s)", id, ctx.Err(), last, early.outcome())
	}
	for {
		resp, err := c.inspectForHealth(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return gaveUp()
			}
			return err
		}
		done, err := healthVerdict(resp, id)
		if done {
			return err
		}
		if s := resp.State; s != nil && s.Health != nil {
			last = string(s.Health.Status)
		}
		if early == nil && startInterval > 0 && resp.State != nil {
			if cmd := healthCommand(resp.Config); cmd != nil {
				early = c.checkEarly(ctx, id, cmd, healthTimeout(resp.Config.Healthcheck), startInterval)
				startedAt = resp.State.StartedAt
			}
		}
		select {
		case <-ctx.Done():
			return gaveUp()
		case <-early.passedC():
			return c.confirmPass(ctx, id, startedAt)
		case <-ticker.C:
		}
	}
}

func (c *Client) inspectForHealth(ctx context.Context, id string) (container.InspectResponse, error) {
	var resp container.InspectResponse
	err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
		resp, err = c.api.ContainerInspect(ctx, id)
		return err
	})
	if err != nil && ctx.Err() == nil {
		return resp, containerError("wait for health of", id, err)
	}
	return resp, err
}

// confirmPass checks, after a run of the healthcheck passed, that the container it ran in still runs
// (not restarted since startedAt) and that Docker has not reported it unhealthy in the meantime.
func (c *Client) confirmPass(ctx context.Context, id, startedAt string) error {
	resp, err := c.inspectForHealth(ctx, id)
	if err != nil {
		return err
	}
	if done, err := healthVerdict(resp, id); done {
		return err
	}
	switch {
	case resp.State == nil: // what healthVerdict waits on: read as not confirmed
		return fmt.Errorf("container %s: %w: Docker gave no state for it after its healthcheck passed", id, ErrExited)
	case resp.State.StartedAt != startedAt:
		return fmt.Errorf("container %s: %w: it restarted while booting (started at %s, then at %s); see `docker logs` of the container",
			id, ErrExited, startedAt, resp.State.StartedAt)
	}
	return nil
}

// earlyChecks are WaitHealthy's own runs of a container's healthcheck.
type earlyChecks struct {
	passed chan struct{} // closed by the first run that passes

	mu   sync.Mutex
	last string // how the latest run that did not pass ended
}

// passedC is nil (never ready) when no runs were started.
func (e *earlyChecks) passedC() <-chan struct{} {
	if e == nil {
		return nil
	}
	return e.passed
}

// outcome is the latest failed run's end, for an error; "" without one.
func (e *earlyChecks) outcome() string {
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last == "" {
		return ""
	}
	return "; haroll's last run of the healthcheck: " + e.last
}

// checkEarly runs cmd in container id every interval, one run at a time, until a run passes or ctx
// ends.
func (c *Client) checkEarly(ctx context.Context, id string, cmd []string, timeout, interval time.Duration) *earlyChecks {
	e := &earlyChecks{passed: make(chan struct{})}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			ok, how := c.runCheck(ctx, id, cmd, timeout)
			if ok {
				close(e.passed)
				return
			}
			if ctx.Err() != nil {
				return
			}
			e.mu.Lock()
			e.last = how
			e.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return e
}

// runCheck runs cmd once in container id and reports whether it exited 0 within timeout, and how it
// ended when it did not. A run still going at the timeout has failed, but is waited for (within ctx):
// the API cannot kill it, and runs must not pile up in the container.
func (c *Client) runCheck(ctx context.Context, id string, cmd []string, timeout time.Duration) (bool, string) {
	var created container.ExecCreateResponse
	if err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
		created, err = c.api.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd})
		return err
	}); err != nil {
		return false, "not created: " + err.Error()
	}
	deadline := time.Now().Add(timeout)
	if err := c.bounded(ctx, 0, func(ctx context.Context) error {
		return c.api.ContainerExecStart(ctx, created.ID, container.ExecStartOptions{Detach: true})
	}); err != nil {
		return false, "did not start: " + err.Error()
	}
	t := time.NewTicker(execPollInterval)
	defer t.Stop()
	ended := 0 // inspects in a row that saw the run ended with exit code 0
	for {
		var run container.ExecInspect
		if err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
			run, err = c.api.ContainerExecInspect(ctx, created.ID)
			return err
		}); err != nil {
			return false, "inspect: " + err.Error()
		}
		switch {
		case run.Running:
		case time.Now().After(deadline):
			return false, fmt.Sprintf("ran longer than its timeout (%s), exit code %d", timeout, run.ExitCode)
		case run.Pid == 0:
			return false, "never ran"
		case run.ExitCode != 0:
			return false, fmt.Sprintf("exit code %d", run.ExitCode)
		default:
			// The SDK reads an exit code not yet set (null) as 0: a pass
			// counts once a second inspect says the same.
			if ended++; ended == 2 {
				return true, ""
			}
			continue
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err().Error()
		case <-t.C:
		}
	}
}

// healthCommand is the command Docker runs for the container's healthcheck: the arguments of a CMD
// test, or the container's shell (/bin/sh -c unless SHELL says otherwise) with those of a CMD-SHELL
// test. It is nil when there is nothing to run (no healthcheck, NONE, an empty test).
func healthCommand(cfg *container.Config) []string {
	if cfg == nil || !healthcheckEnabled(cfg.Healthcheck) || len(cfg.Healthcheck.Test) < 2 {
		return nil
	}
	test := cfg.Healthcheck.Test
	switch test[0] {
	case "CMD":
		return slices.Clone(test[1:])
	case "CMD-SHELL":
		shell := []string(cfg.Shell)
		if len(shell) == 0 {
			shell = []string{"/bin/sh", "-c"}
		}
		return append(slices.Clone(shell), test[1:]...)
	}
	return nil
}

// healthTimeout bounds one run of the healthcheck, as Docker bounds its own.
func healthTimeout(hc *container.HealthConfig) time.Duration {
	if hc == nil || hc.Timeout <= 0 {
		return defaultHealthTimeout
	}
	return hc.Timeout
}

// healthVerdict decides from one inspect whether waiting is over, and how it ended.
func healthVerdict(resp container.InspectResponse, ref string) (bool, error) {
	if resp.ContainerJSONBase == nil || resp.State == nil {
		return false, nil
	}
	s := resp.State
	if !s.Running || s.Restarting {
		return true, fmt.Errorf("container %s: %w: %s", ref, ErrExited, exitDetail(s))
	}
	if resp.Config == nil || !healthcheckEnabled(resp.Config.Healthcheck) {
		return true, nil
	}
	if s.Health == nil {
		return false, nil
	}
	switch s.Health.Status {
	case container.Healthy:
		return true, nil
	case container.Unhealthy:
		return true, fmt.Errorf("container %s: %w after %s", ref, ErrUnhealthy, unhealthyDetail(s.Health))
	default:
		return false, nil
	}
}

func exitDetail(s *container.State) string {
	var b strings.Builder
	switch {
	case s.Restarting:
		fmt.Fprintf(&b, "it crashed with exit code %d and Docker is restarting it", s.ExitCode)
	case s.Status == container.StateCreated:
		b.WriteString("it was never started")
	default:
		fmt.Fprintf(&b, "status %s, exit code %d", s.Status, s.ExitCode)
	}
	if s.OOMKilled {
		b.WriteString(", killed for lack of memory")
	}
	if s.Error != "" {
		fmt.Fprintf(&b, ", error %q", s.Error)
	}
	b.WriteString(lastCheckOutput(s.Health))
	b.WriteString("; see `docker logs` of the container")
	return b.String()
}

// unhealthyDetail says how Docker came to call a container unhealthy.
func unhealthyDetail(h *container.Health) string {
	return fmt.Sprintf("%d failed checks%s", h.FailingStreak, lastCheckOutput(h))
}

// lastCheckOutput quotes the output of the most recent healthcheck, if any.
func lastCheckOutput(h *container.Health) string {
	if h == nil || len(h.Log) == 0 || h.Log[len(h.Log)-1] == nil {
		return ""
	}
	r := h.Log[len(h.Log)-1]
	out := strings.TrimSpace(r.Output)
	if len(out) > 300 {
		out = out[:300] + "..."
	}
	return fmt.Sprintf(", last check exit code %d, output %q", r.ExitCode, out)
}
