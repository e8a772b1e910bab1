package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
)

// Container is what haroll needs to know about a container, read by Inspect.
type Container struct {
	ID   string
	Name string // without the leading "/"
	// Image is the reference the container was created from (Config.Image); ImageID the sha256:... of
	// the image it runs.
	Image   string
	ImageID string
	Running bool
	// Health is "" when the container has no healthcheck, else starting, healthy or unhealthy.
	Health string
	// Restarting: it crashed and Docker is restarting it (its restart policy); Running may be true.
	Restarting bool
	// Trouble says why a container is not running (exit code, OOM kill, last check output) or is
	// unhealthy (failed checks, last output); "" otherwise.
	Trouble string
	// HasHealthcheck: a healthcheck is configured, by the image or the container, and not disabled.
	HasHealthcheck bool
	// Networks maps a network name to the container's endpoint on it.
	Networks map[string]Endpoint
	// Ports maps a container port ("8080/tcp") to its actual host bindings; empty when not running.
	Ports       map[string][]PortBinding
	StopTimeout *int   // seconds; nil means the daemon's default
	StopSignal  string // "" means SIGTERM
	Labels      map[string]string
	// FixedHostPorts are the configured publications with a fixed host port
	// ("127.0.0.1:18081->8080/tcp"): a second container with the same
	// configuration cannot start while this one runs.
	FixedHostPorts []string
	// NetworkMode is HostConfig.NetworkMode: "host", "bridge", a network's
	// name, "container:<id>"...
	NetworkMode string
	// StaticAddresses are the addresses the operator fixed (`--ip`,
	// `--ip6`, compose's ipv4_address), as "10.213.7.11 on front": a
	// second container with the same configuration cannot start while this
	// one runs.
	StaticAddresses []string
	// MacAddress is the MAC address the operator fixed (`--mac-address`,
	// Config.MacAddress); "" when Docker generates one.
	MacAddress string
	// AutoRemove: created with --rm, Docker deletes the container when it
	// stops, so a stopped one cannot be started again.
	AutoRemove bool
}

// CanRunBeside reports whether a clone of c can run at the same time as c:
// it publishes no fixed host port, has no static IP or MAC address (the
// clone keeps them: Docker refuses to start it while c holds the IP, and two
// interfaces with one MAC on a network break both), and does not share the
// host's or another container's network stack, where it would bind the same
// ports. It says why not otherwise.
func (c Container) CanRunBeside() (bool, string) {
	switch {
	case len(c.FixedHostPorts) > 0:
		return false, "it publishes fixed host ports (" + strings.Join(c.FixedHostPorts, ", ") + ")"
	case len(c.StaticAddresses) > 0:
		return false, "it has static IP addresses (" + strings.Join(c.StaticAddresses, ", ") + ")"
	case c.MacAddress != "":
		return false, "it has a static MAC address (" + c.MacAddress + ")"
	case c.NetworkMode == "host" || strings.HasPrefix(c.NetworkMode, "container:"):
		return false, "its network mode is " + c.NetworkMode
	}
	return true, ""
}

// Endpoint is a container's attachment to one network.
type Endpoint struct {
	IP string
	// Aliases are the DNS aliases of the container on the network, without the short container ID
	// that Docker adds by itself.
	Aliases []string
}

// PortBinding is one host address a container port is published on.
type PortBinding struct {
	HostIP   string
	HostPort int
}

// HostPort is the host address container port port ("8080/tcp") is published on, preferring an IPv4
// binding: Docker 20.10 reports an unqualified -p twice, on 0.0.0.0 and on ::, with the same port.
// An ephemeral binding gets a new port each time the container starts, so read it after Start.
func (c Container) HostPort(port string) (PortBinding, bool) {
	bindings := c.Ports[port]
	for _, b := range bindings {
		if ip := net.ParseIP(b.HostIP); ip == nil || ip.To4() != nil {
			return b, true
		}
	}
	if len(bindings) > 0 {
		return bindings[0], true
	}
	return PortBinding{}, false
}

// Inspect reads a container by name or ID. An unknown container is ErrContainerNotFound.
func (c *Client) Inspect(ctx context.Context, nameOrID string) (Container, error) {
	var resp container.InspectResponse
	err := c.bounded(ctx, 0, func(ctx context.Context) (err error) {
		resp, err = c.api.ContainerInspect(ctx, nameOrID)
		return err
	})
	if err != nil {
		return Container{}, containerError("inspect", nameOrID, err)
	}
	return fromInspect(resp), nil
}

// Start starts a created or stopped container; starting a running one is not an error. An unknown
// container is ErrContainerNotFound.
func (c *Client) Start(ctx context.Context, id string) error {
	if err := c.bounded(ctx, 0, func(ctx context.Context) error {
		return c.api.ContainerStart(ctx, id, container.StartOptions{})
	}); err != nil {
		return containerError("start", id, err)
	}
	return nil
}

// Stop stops a container with its own stop signal and stop timeout (the daemon's default, 10 s, when it
// has none), then SIGKILL. It returns once the container has stopped; ctx must allow for the stop
// timeout. A container already stopped is not an error; an unknown one is ErrContainerNotFound.
// The call is bounded by the client's timeout plus the container's stop timeout.
func (c *Client) Stop(ctx context.Context, id string) error {
	ctr, err := c.Inspect(ctx, id)
	if err != nil {
		return err
	}
	grace := defaultStopTimeout
	if ctr.StopTimeout != nil && *ctr.StopTimeout >= 0 {
		grace = time.Duration(*ctr.StopTimeout) * time.Second
	}
	if err := c.bounded(ctx, grace, func(ctx context.Context) error {
		return c.api.ContainerStop(ctx, id, container.StopOptions{})
	}); err != nil {
		return containerError("stop", id, err)
	}
	return nil
}

// defaultStopTimeout is the daemon's stop timeout for a container without its own.
const defaultStopTimeout = 10 * time.Second

// Rename gives container id the name name. A name held by another container is ErrNameConflict; an
// unknown container is ErrContainerNotFound.
func (c *Client) Rename(ctx context.Context, id, name string) error {
	err := c.bounded(ctx, 0, func(ctx context.Context) error { return c.api.ContainerRename(ctx, id, name) })
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("rename container %s to %s: %w (remove or rename the container holding that name)", id, name, ErrNameConflict)
	default:
		return containerError("rename", id, err)
	}
}

// Remove removes a container, stopping it first if it runs. Its volumes are kept. A container that
// does not exist is not an error, nor is one Docker is removing already (a --rm container that
// stopped): Remove then returns once it is gone.
func (c *Client) Remove(ctx context.Context, id string) error {
	err := c.bounded(ctx, 0, func(ctx context.Context) error {
		return c.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress"):
		return c.waitGone(ctx, id)
	}
	return fmt.Errorf("remove container %s: %w", id, err)
}

// waitGone waits, within the client's timeout, until container id no longer exists.
func (c *Client) waitGone(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for {
		_, err := c.Inspect(ctx, id)
		switch {
		case errors.Is(err, ErrContainerNotFound):
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("remove container %s: Docker is removing it and it is still there: %w", id, ctx.Err())
		case err != nil:
			return fmt.Errorf("remove container %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(healthPollInterval):
		}
	}
}

// containerError wraps an API error about container ref, turning "not found" into ErrContainerNotFound.
func containerError(op, ref string, err error) error {
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s container %s: %w", op, ref, ErrContainerNotFound)
	}
	return fmt.Errorf("%s container %s: %w", op, ref, err)
}

func fromInspect(resp container.InspectResponse) Container {
	var out Container
	if resp.ContainerJSONBase != nil {
		out.ID = resp.ID
		out.Name = strings.TrimPrefix(resp.Name, "/")
		out.ImageID = resp.Image
		if s := resp.State; s != nil {
			out.Running, out.Restarting = s.Running, s.Restarting
			if s.Health != nil {
				out.Health = string(s.Health.Status)
			}
			switch {
			case !s.Running || s.Restarting:
				out.Trouble = exitDetail(s)
			case out.Health == string(container.Unhealthy):
				out.Trouble = unhealthyDetail(s.Health)
			}
		}
	}
	if cfg := resp.Config; cfg != nil {
		out.Image = cfg.Image
		out.HasHealthcheck = healthcheckEnabled(cfg.Healthcheck)
		out.StopSignal = cfg.StopSignal
		if cfg.StopTimeout != nil {
			t := *cfg.StopTimeout
			out.StopTimeout = &t
		}
		out.Labels = maps.Clone(cfg.Labels)
		// Deprecated by API 1.44, where the MAC moved to each endpoint; up to
		// 1.43 it is where a configured MAC (and only that) shows.
		out.MacAddress = cfg.MacAddress
	}
	if !out.HasHealthcheck {
		out.Health = ""
	}
	if hc := resp.HostConfig; hc != nil {
		out.NetworkMode = string(hc.NetworkMode)
		out.AutoRemove = hc.AutoRemove
		for _, port := range sortedKeys(hc.PortBindings) {
			for _, b := range hc.PortBindings[port] {
				if n, err := strconv.Atoi(b.HostPort); err == nil && n != 0 {
					out.FixedHostPorts = append(out.FixedHostPorts, net.JoinHostPort(b.HostIP, b.HostPort)+"->"+string(port))
				}
			}
		}
	}
	if ns := resp.NetworkSettings; ns != nil {
		out.Networks = make(map[string]Endpoint, len(ns.Networks))
		for name, ep := range ns.Networks {
			if ep == nil {
				continue
			}
			out.Networks[name] = Endpoint{IP: ep.IPAddress, Aliases: userAliases(ep.Aliases, out.ID)}
		}
		for _, name := range sortedKeys(ns.Networks) {
			if ep := ns.Networks[name]; ep != nil && ep.IPAMConfig != nil {
				for _, ip := range []string{ep.IPAMConfig.IPv4Address, ep.IPAMConfig.IPv6Address} {
					if ip != "" {
						out.StaticAddresses = append(out.StaticAddresses, ip+" on "+name)
					}
				}
			}
		}
		out.Ports = make(map[string][]PortBinding, len(ns.Ports))
		for port, bindings := range ns.Ports {
			for _, b := range bindings {
				p, err := strconv.Atoi(b.HostPort)
				if err != nil {
					continue // not published (yet)
				}
				out.Ports[string(port)] = append(out.Ports[string(port)], PortBinding{HostIP: b.HostIP, HostPort: p})
			}
		}
	}
	return out
}

// healthcheckEnabled reports whether h (a container's effective healthcheck) makes Docker run checks.
func healthcheckEnabled(h *container.HealthConfig) bool {
	return h != nil && len(h.Test) > 0 && h.Test[0] != "NONE"
}

// userAliases drops the aliases Docker derives from the container ID (on user networks Docker 20.10
// adds the 12-character short ID), keeping those an operator chose.
func userAliases(aliases []string, id string) []string {
	var out []string
	for _, a := range aliases {
		if len(a) >= 12 && strings.HasPrefix(id, a) {
			continue
		}
		out = append(out, a)
	}
	return out
}
