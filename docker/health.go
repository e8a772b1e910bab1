package docker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// healthPollInterval is how often WaitHealthy inspects the container; an inspect costs the daemon
// little, and Docker's own checks run far less often.
const healthPollInterval = 50 * time.Millisecond

// WaitHealthy waits until Docker reports container id healthy and returns nil. A container without a
// healthcheck counts as healthy as soon as it runs. It returns ErrUnhealthy when Docker reports it
// unhealthy, ErrExited when it is not running (it exited, is restarting after a crash, or was never
// started), with the exit code and the last healthcheck output, ErrContainerNotFound when it is gone,
// and ctx's error, with the last health status, when ctx ends first.
func (c *Client) WaitHealthy(ctx context.Context, id string) error {
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
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for container %s to become healthy: %w (last health status: %s)", id, ctx.Err(), last)
		case <-ticker.C:
		}
	}
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
