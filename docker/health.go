package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// healthPollInterval is how often WaitHealthy inspects the container; an inspect costs the daemon
// little, and Docker's own checks run far less often.
const healthPollInterval = 50 * time.Millisecond

// execPollInterval is how often a run of the healthcheck command is asked whether it has ended.
const execPollInterval = 10 * time.Millisecond

// defaultHealthTimeout bounds one run of a healthcheck that sets no timeout, as Docker does.
const defaultHealthTimeout = 30 * time.Second

// WaitHealthy waits until container id is healthy and returns nil. A container without a healthcheck
// counts as healthy as soon as it runs.
//
// Docker runs a container's first healthcheck one HEALTHCHECK interval after the start (30 s unless
// the image says otherwise), however soon the app is ready. With startInterval > 0, WaitHealthy does
// not wait for it: while Docker's status is still "starting", it runs the healthcheck's own command in
// the container (an exec, as Docker does, with the container's user, environment and workdir) every
// startInterval, one run at a time, each bounded by the healthcheck's timeout, and the first run that
// exits 0 ends the wait, the way Docker 25's --health-start-interval would. A run that fails or cannot
// start (a CMD-SHELL check in an image without /bin/sh) only means "not yet". Docker's own reports
// still decide the rest: it returns ErrUnhealthy when Docker reports the container unhealthy,
// ErrExited when it is not running (it exited, is restarting after a crash, or was never started),
// with the exit code and the last healthcheck output, ErrContainerNotFound when it is gone, and ctx's
// error, with the last health status, when ctx ends first.
func (c *Client) WaitHealthy(ctx context.Context, id string, startInterval time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the early checks
	var passed <-chan struct{}
	ticker := time.NewTicker(healthPollInterval)
	defer ticker.Stop()
	last := "unknown"
	for {
		var resp container.InspectResponse
		err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
			resp, err = c.api.ContainerInspect(ctx, id)
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("wait for container %s to become healthy: %w (last health status: %s)", id, ctx.Err(), last)
			}
			return containerError("wait for health of", id, err)
		}
		done, err := healthVerdict(resp, id)
		if done {
			return err
		}
		if s := resp.State; s != nil && s.Health != nil {
			last = string(s.Health.Status)
		}
		if passed == nil && startInterval > 0 {
			if cmd := healthCommand(resp.Config); cmd != nil {
				passed = c.checkEarly(ctx, id, cmd, healthTimeout(resp.Config.Healthcheck), startInterval)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for container %s to become healthy: %w (last health status: %s)", id, ctx.Err(), last)
		case <-passed:
			return nil
		case <-ticker.C:
		}
	}
}

// checkEarly runs cmd in container id every interval until a run exits 0, which closes the returned
// channel, or ctx ends. A run that outlasts timeout counts as failed; it is left to end by itself, as
// the API cannot stop an exec, and the next run does not wait for it.
func (c *Client) checkEarly(ctx context.Context, id string, cmd []string, timeout, interval time.Duration) <-chan struct{} {
	passed := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if c.runCheck(ctx, id, cmd, timeout) {
				close(passed)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return passed
}

// runCheck runs cmd once in container id and reports whether it exited 0 within timeout.
func (c *Client) runCheck(ctx context.Context, id string, cmd []string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var created container.ExecCreateResponse
	if err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
		created, err = c.api.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd})
		return err
	}); err != nil {
		return false
	}
	if err := c.bounded(ctx, 0, func(ctx context.Context) error {
		return c.api.ContainerExecStart(ctx, created.ID, container.ExecStartOptions{Detach: true})
	}); err != nil {
		return false // it could not start: not a pass
	}
	t := time.NewTicker(execPollInterval)
	defer t.Stop()
	for {
		var run container.ExecInspect
		if err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
			run, err = c.api.ContainerExecInspect(ctx, created.ID)
			return err
		}); err != nil {
			return false
		}
		if !run.Running {
			return run.ExitCode == 0
		}
		select {
		case <-ctx.Done():
			return false
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
		return true, fmt.Errorf("container %s: %w after %d failed checks%s", ref, ErrUnhealthy, s.Health.FailingStreak, lastCheckOutput(s.Health))
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
