package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/haroll/haroll/runtime"
)

// Addressing says how HAProxy reaches a host's app containers.
type Addressing string

const (
	// FixedPorts publishes each container on its own fixed loopback port:
	// a replacement keeps the address.
	FixedPorts Addressing = "fixed"
	// EphemeralPorts publishes on a port Docker picks: every new container
	// gets a new address.
	EphemeralPorts Addressing = "ephemeral"
	// UserNetwork puts the containers on a user network and HAProxy talks to
	// their container IPs: every new container gets a new address.
	UserNetwork Addressing = "network"
	// DefaultBridge leaves the containers on the daemon's default bridge
	// network and HAProxy talks to their container IPs (with a private
	// Dockerd, on its own bridge): every new container gets a new address.
	DefaultBridge Addressing = "bridge"
)

// HostOptions describe one simulated front-end host: an HAProxy and its app
// containers.
type HostOptions struct {
	Dir        string // haproxy.cfg, socket, agent.yaml, state dir
	Name       string // prefix of container and network names; unique per host
	Image      string // image the containers start on
	Weights    []int  // one container and server per weight
	Addressing Addressing
	Inter      time.Duration // HAProxy check interval (default DefaultInter)
	Rise, Fall int
	// HealthTimeout and DrainTimeout go to the agent config (defaults 20s, 30s).
	HealthTimeout, DrainTimeout time.Duration
	// HealthDocker goes to the agent config's health.docker ("" leaves the
	// default, wait).
	HealthDocker string
	// Strategy goes to every slot of the agent config ("" leaves the default).
	Strategy string
	// Backend lines are added to the HAProxy backend section (persistence:
	// "cookie SRV insert indirect nocache", "stick on src", "retries 0").
	Backend string
	// ServerOptions, when set, gives each server line's options by the
	// server's index (0-based), e.g. "cookie s1".
	ServerOptions func(i int) string
	// ExtraRunArgs, when set, gives more `docker run` options for container
	// i (0-based), e.g. "--rm", "-e", "SHUTDOWN_DELAY=8s", "--ip", "10.213.7.11".
	ExtraRunArgs func(i int) []string
	// Run, when set, creates and starts container i under name instead of
	// `docker run`, for what the docker CLI cannot ask of the daemon (a MAC
	// address on API < 1.44); network is the host's user network, or "".
	Run func(ctx context.Context, name, network string, i int) error
	// Subnet is the user network's subnet (UserNetwork only; "" lets
	// Docker pick one), for containers with a static --ip.
	Subnet string
	// DockerHost is the Docker daemon the containers run on, as `docker
	// --host` takes it (a private Dockerd's Host); it goes to the agent
	// config's docker.host. "" is the machine's engine.
	DockerHost string
	// PidNamespace runs HAProxy in a pid namespace of its own, as in a
	// container (HAProxyConfig.PidNamespace).
	PidNamespace bool
	// MasterSocket gives the agent HAProxy's master CLI
	// (haproxy.master_socket).
	MasterSocket bool
	// Pairs makes every slot a blue/green pair: besides server s<i> the
	// backend declares its idle twin s<i>b, `disabled`, at the same weight,
	// and the agent config gives the slot alt {server: s<i>b, port: P}.
	// With FixedPorts P is a fixed loopback port of its own (free when the
	// host starts), the alt server's address. With EphemeralPorts P is 0,
	// the servers are written ipv4@localhost:<port> (a host name: a reload
	// keeps the address the agent re-points them at) and the alt server
	// starts at its primary's address. Other addressings are refused.
	// HAProxy gets a server-state-file (Host.StateFile) loaded at every
	// (re)load.
	Pairs bool
	// AltServerOptions, when set, gives each alt server line's options by
	// the slot's index (0-based), e.g. "cookie s1b"; "disabled" is always
	// added.
	AltServerOptions func(i int) string
	// MaxSurge goes to the agent config's max_surge (0 leaves the default).
	MaxSurge int
	// DrainGrace goes to the agent config's drain.grace (0 leaves the
	// default).
	DrainGrace time.Duration
}

// Host is a running simulated host.
type Host struct {
	Opts    HostOptions
	HAProxy *HAProxy
	Network string // user network, for UserNetwork
	// Names are the containers "<name>-<i>"; slot i is "app-<i>", its server "s<i>".
	Names []string
	// RunArgs are the `docker run` options each container was started with
	// (without the image), by container name.
	RunArgs   map[string][]string
	AgentYAML string // a haroll agent config for this host
	// With Pairs: Alts are the alt servers by slot ("s<i>b"), AltPorts the
	// host ports their containers publish (0 unless FixedPorts), StateFile
	// HAProxy's server-state-file.
	Alts       []string
	AltPorts   []int
	StateFile  string
	containers []string
}

// StartHost starts the containers, an HAProxy in front of them, and writes
// the agent config. On error everything started is removed again.
func StartHost(ctx context.Context, o HostOptions) (h *Host, err error) {
	if o.Inter == 0 {
		o.Inter = DefaultInter
	}
	if o.HealthTimeout == 0 {
		o.HealthTimeout = 20 * time.Second
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	h = &Host{Opts: o, RunArgs: map[string][]string{}}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if o.Pairs && o.Addressing != FixedPorts && o.Addressing != EphemeralPorts {
		return h, fmt.Errorf("addressing %q: Pairs needs fixed or ephemeral ports (HAProxy keeps a re-pointed address over a reload only for a server written with a host name)", o.Addressing)
	}
	if o.Addressing == UserNetwork {
		h.Network = o.Name + "-net"
		args := []string{"network", "create", "--label", "haroll.test=1", h.Network}
		if o.Subnet != "" {
			args = append(args, "--subnet", o.Subnet)
		}
		if _, err := h.docker(ctx, args...); err != nil {
			return h, err
		}
	}
	var servers, alts []Server
	for i, w := range o.Weights {
		name := fmt.Sprintf("%s-%d", o.Name, i+1)
		args := []string{"run", "-d", "--name", name, "--label", "haroll.test=1", "--stop-timeout", "10"}
		switch o.Addressing {
		case FixedPorts:
			port, err := FreePort()
			if err != nil {
				return h, err
			}
			args = append(args, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port))
		case EphemeralPorts:
			args = append(args, "-p", "127.0.0.1::8080")
		case UserNetwork:
			args = append(args, "--network", h.Network, "--network-alias", fmt.Sprintf("app%d", i+1))
		case DefaultBridge:
		default:
			return h, fmt.Errorf("addressing %q: want fixed, ephemeral, network or bridge", o.Addressing)
		}
		if o.ExtraRunArgs != nil {
			args = append(args, o.ExtraRunArgs(i)...)
		}
		if o.Run != nil {
			err = o.Run(ctx, name, h.Network, i)
		} else {
			_, err = h.docker(ctx, append(args, o.Image)...)
			h.RunArgs[name] = args[1:]
		}
		if err != nil {
			return h, err
		}
		h.containers = append(h.containers, name)
		h.Names = append(h.Names, name)
		addr, err := h.containerAddr(ctx, name)
		if err != nil {
			return h, err
		}
		if o.Pairs && o.Addressing == EphemeralPorts {
			// The idle server is re-pointed at each new container: a reload
			// keeps that address only for a server written with a host
			// name (resolved at startup by init-addr last,libc).
			addr = "ipv4@localhost:" + addr[strings.LastIndexByte(addr, ':')+1:]
		}
		srv := Server{Name: fmt.Sprintf("s%d", i+1), Addr: addr, Weight: w}
		if o.ServerOptions != nil {
			srv.Options = o.ServerOptions(i)
		}
		servers = append(servers, srv)
		if o.Pairs {
			alt, port, err := h.altServer(i, srv)
			if err != nil {
				return h, err
			}
			alts = append(alts, alt)
			h.Alts, h.AltPorts = append(h.Alts, alt.Name), append(h.AltPorts, port)
		}
	}
	fe, err := FreePort()
	if err != nil {
		return h, err
	}
	if o.Pairs {
		h.StateFile = filepath.Join(o.Dir, "server-state")
		if !filepath.IsAbs(h.StateFile) {
			if h.StateFile, err = filepath.Abs(h.StateFile); err != nil {
				return h, err
			}
		}
	}
	// The alt servers follow every primary: server i of the backend is still
	// slot i's primary.
	h.HAProxy, err = StartHAProxy(ctx, HAProxyConfig{Dir: o.Dir, Frontend: fe, Servers: append(servers, alts...), Inter: o.Inter, Rise: o.Rise, Fall: o.Fall,
		Extra: o.Backend, PidNamespace: o.PidNamespace, ServerStateFile: h.StateFile})
	if err != nil {
		return h, err
	}
	if err := h.writeAgentConfig(); err != nil {
		return h, err
	}
	return h, h.WaitAllUp(ctx)
}

// altServer is slot i's idle twin of primary: declared disabled, at the
// primary's weight, at its own fixed loopback port (returned) with
// FixedPorts, else at the primary's address with port 0 returned.
func (h *Host) altServer(i int, primary Server) (Server, int, error) {
	alt := Server{Name: primary.Name + "b", Addr: primary.Addr, Weight: primary.Weight, Options: "disabled"}
	if h.Opts.AltServerOptions != nil {
		alt.Options = strings.TrimSpace(h.Opts.AltServerOptions(i) + " disabled")
	}
	if h.Opts.Addressing != FixedPorts {
		return alt, 0, nil
	}
	port, err := FreePort()
	if err != nil {
		return alt, 0, err
	}
	alt.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	return alt, port, nil
}

// containerAddr is where HAProxy reaches a container: its published port, or
// its IP on the host's user network.
func (h *Host) containerAddr(ctx context.Context, name string) (string, error) {
	switch h.Opts.Addressing {
	case UserNetwork:
		ip, err := h.docker(ctx, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+h.Network+"\").IPAddress}}", name)
		return ip + ":8080", err
	case DefaultBridge:
		ip, err := h.docker(ctx, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
		if err == nil && ip == "" {
			err = fmt.Errorf("container %s has no IP address on the default bridge", name)
		}
		return ip + ":8080", err
	}
	out, err := h.docker(ctx, "port", name, "8080/tcp")
	if err != nil {
		return "", err
	}
	return strings.Fields(out)[0], nil
}

func (h *Host) writeAgentConfig() error {
	var b strings.Builder
	fmt.Fprintf(&b, "haproxy:\n  socket: %s\n  config: %s\n", h.HAProxy.Socket, h.HAProxy.ConfigPath)
	if h.Opts.MasterSocket {
		fmt.Fprintf(&b, "  master_socket: %s\n", h.HAProxy.MasterSocket)
	}
	fmt.Fprintf(&b, "state_dir: %s\nsocket: %s\n", filepath.Join(h.Opts.Dir, "state"), h.AgentSocket())
	if h.Opts.DockerHost != "" {
		fmt.Fprintf(&b, "docker:\n  host: %s\n", h.Opts.DockerHost)
	}
	fmt.Fprintf(&b, "drain:\n  timeout: %s\n", h.Opts.DrainTimeout)
	if h.Opts.DrainGrace > 0 {
		fmt.Fprintf(&b, "  grace: %s\n", h.Opts.DrainGrace)
	}
	fmt.Fprintf(&b, "health:\n  timeout: %s\n  path: /health\n", h.Opts.HealthTimeout)
	if h.Opts.HealthDocker != "" {
		fmt.Fprintf(&b, "  docker: %s\n", h.Opts.HealthDocker)
	}
	if h.Opts.MaxSurge > 0 {
		fmt.Fprintf(&b, "max_surge: %d\n", h.Opts.MaxSurge)
	}
	b.WriteString("slots:\n")
	for i, name := range h.Names {
		fmt.Fprintf(&b, "  - {name: app-%d, backend: %s, server: s%d, container: %s, port: 8080", i+1, DefaultBackend, i+1, name)
		if h.Network != "" {
			fmt.Fprintf(&b, ", network: %s", h.Network)
		}
		if h.Opts.Addressing == DefaultBridge {
			b.WriteString(", network: bridge")
		}
		if h.Opts.Strategy != "" {
			fmt.Fprintf(&b, ", strategy: %s", h.Opts.Strategy)
		}
		if h.Opts.Pairs {
			fmt.Fprintf(&b, ", alt: {server: %s, port: %d}", h.Alts[i], h.AltPorts[i])
		}
		b.WriteString("}\n")
	}
	h.AgentYAML = filepath.Join(h.Opts.Dir, "agent.yaml")
	return os.WriteFile(h.AgentYAML, []byte(b.String()), 0o644)
}

// AgentSocket is the unix socket of the host's agent, when one runs.
func (h *Host) AgentSocket() string { return filepath.Join(h.Opts.Dir, "agent.sock") }

// Servers reads every server of the host's backend from HAProxy.
func (h *Host) Servers(ctx context.Context) ([]runtime.ServerStat, error) {
	c, err := runtime.New(h.HAProxy.Socket, 0)
	if err != nil {
		return nil, err
	}
	return c.Backend(ctx, DefaultBackend)
}

// WaitAllUp waits until every server is fully up by HAProxy's checks.
func (h *Host) WaitAllUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		stats, err := h.Servers(ctx)
		up := 0
		for _, s := range stats {
			if s.FullyUp() {
				up++
			}
		}
		if err == nil && up == len(h.Names) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("servers not all up: %+v (%v)", stats, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Container is what a slot's container runs, from docker inspect.
type Container struct{ ID, Image string }

// Containers returns the ID and image reference of every slot's container.
func (h *Host) Containers(ctx context.Context) ([]Container, error) {
	var out []Container
	for _, name := range h.Names {
		s, err := h.docker(ctx, "inspect", "-f", "{{.Id}} {{.Config.Image}}", name)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(s)
		out = append(out, Container{ID: f[0], Image: f[1]})
	}
	return out, nil
}

// AllContainers lists every container whose name starts with the host's
// prefix, stopped ones included: a leftover shows up here.
func (h *Host) AllContainers(ctx context.Context) ([]string, error) {
	out, err := h.docker(ctx, "ps", "-a", "--filter", "name=^"+h.Opts.Name+"-", "--format", "{{.Names}}")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// Close stops HAProxy and removes every container and the network of the host.
func (h *Host) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if h.HAProxy != nil {
		_ = h.HAProxy.Stop()
	}
	if names, err := h.AllContainers(ctx); err == nil && len(names) > 0 {
		_, _ = h.docker(ctx, append([]string{"rm", "-f"}, names...)...)
	}
	if h.Network != "" {
		_, _ = h.docker(ctx, "network", "rm", h.Network)
	}
}

// URL is the host's frontend.
func (h *Host) URL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(h.HAProxy.Frontend) + path
}

// docker runs the docker CLI against the host's Docker daemon.
func (h *Host) docker(ctx context.Context, args ...string) (string, error) {
	if h.Opts.DockerHost != "" {
		args = append([]string{"--host", h.Opts.DockerHost}, args...)
	}
	return docker(ctx, args...)
}

// docker runs the docker CLI (no shell) and returns its trimmed stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("docker %s: %s", strings.Join(args, " "), strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Addrs returns where each slot's container can be reached now, as HAProxy
// should address it.
func (h *Host) Addrs(ctx context.Context) ([]string, error) {
	var out []string
	for _, name := range h.Names {
		a, err := h.containerAddr(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// AppendAgentConfig adds top-level YAML keys to the host's agent config.
func (h *Host) AppendAgentConfig(yaml string) error {
	f, err := os.OpenFile(h.AgentYAML, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(yaml)
	return err
}
