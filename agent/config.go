package agent

import (
	"errors"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/internal/hook"
	"github.com/haroll/haroll/runtime"
)

// Config is the agent's configuration for one host.
type Config struct {
	HAProxy  HAProxyConfig `mapstructure:"haproxy"`
	Docker   DockerConfig  `mapstructure:"docker"`
	StateDir string        `mapstructure:"state_dir"`
	Drain    DrainConfig   `mapstructure:"drain"`
	Health   HealthConfig  `mapstructure:"health"`
	// MinServing is how many OTHER servers of the slot's backend must be
	// serving before the slot may be drained.
	MinServing int `mapstructure:"min_serving"`
	// AllowedImages are path.Match patterns ("registry.local/app:*"); empty
	// allows every image.
	AllowedImages []string     `mapstructure:"allowed_images"`
	Slots         []SlotConfig `mapstructure:"slots"`
	// MaxSurge is how many of the host's blue/green slots (those with an
	// alt server) may be in their surge at once: new side created, booted,
	// gated and given its weight while the old side still serves. A slot's
	// old side drains after its surge, and may overlap the next slot's.
	MaxSurge int `mapstructure:"max_surge"`

	// Listen is the TCP address `haroll agent` serves gRPC on, with mutual
	// TLS; empty serves only the unix socket.
	Listen string `mapstructure:"listen"`
	// Socket is the unix socket for the haroll CLI on this host.
	Socket string    `mapstructure:"socket"`
	TLS    TLSConfig `mapstructure:"tls"`

	// Hooks run for every slot that does not set its own (see HooksConfig).
	Hooks   HooksConfig   `mapstructure:"hooks"`
	Metrics MetricsConfig `mapstructure:"metrics"`
	History HistoryConfig `mapstructure:"history"`
}

// HistoryConfig bounds the host's record of replacements (history.go).
type HistoryConfig struct {
	// MaxPerSlot is how many entries of each slot are kept, the newest.
	MaxPerSlot int `mapstructure:"max_per_slot"`
}

// MetricsConfig says where `haroll agent` serves Prometheus metrics.
type MetricsConfig struct {
	// Listen is host:port for GET /metrics (plain HTTP); empty serves none.
	// An empty host listens on every interface.
	Listen string `mapstructure:"listen"`
}

// TLSConfig is the agent's side of mutual TLS.
type TLSConfig struct {
	Cert     string `mapstructure:"cert"`
	Key      string `mapstructure:"key"`
	ClientCA string `mapstructure:"client_ca"`
	// AllowedClients, when set, are the only client certificate names
	// (CommonName or DNS SAN) accepted.
	AllowedClients []string `mapstructure:"allowed_clients"`
}

// HAProxyConfig says how to reach the runtime API.
type HAProxyConfig struct {
	// Socket is a unix socket path or host:port, with admin level.
	Socket string `mapstructure:"socket"`
	// Timeout bounds each runtime API call.
	Timeout time.Duration `mapstructure:"timeout"`
	// Config is the configuration HAProxy runs with: a file, or a directory
	// of *.cfg files read in name order as HAProxy's -f reads one. Preflight
	// reads each slot's backend in it to refuse settings that defeat the
	// drain (`option persist`, `force-persist`); the runtime API cannot tell
	// them. When the default file does not exist the check is skipped with
	// a warning; a path set here must be readable.
	Config string `mapstructure:"config"`
	// MasterSocket is HAProxy's master CLI (`haproxy -W -S <socket>`), a
	// path or host:port: after a reload during a drain, its `show proc` tells
	// when the old worker, still serving its sessions, has exited. Without
	// it the worker's pid is followed only when HAProxy is proven to run in
	// the agent's pid namespace (not in a container). At the default path
	// (Debian's haproxy.service) it is used when it answers for the HAProxy
	// of haproxy.socket; a path set here must. Empty: not used.
	MasterSocket string `mapstructure:"master_socket"`
}

// DefaultMasterSocket is where Debian's haproxy.service puts the master CLI.
const DefaultMasterSocket = "/run/haproxy-master.sock"

// DefaultHAProxyConfig is where Debian's haproxy package keeps its
// configuration.
const DefaultHAProxyConfig = "/etc/haproxy/haproxy.cfg"

// DockerConfig says how to reach the Docker engine.
type DockerConfig struct {
	// Host is a Docker host URL; empty means DOCKER_HOST or the default socket.
	Host string `mapstructure:"host"`
	// Timeout bounds each Docker API call (a stop adds the container's own
	// stop timeout).
	Timeout time.Duration `mapstructure:"timeout"`
	// PullTimeout bounds the pull of an image that is not on the host (a
	// redeploy's preflight, before anything is changed): a pull that has
	// not finished by then is stopped and the request fails.
	PullTimeout time.Duration `mapstructure:"pull_timeout"`
}

// DefaultPullTimeout is docker.pull_timeout when the configuration does not
// set it: some 6 GB at 10 MB/s, and the longest a registry that stalls can
// hold the host when no caller goes away. It equals the coordinator's
// default step_timeout, which includes the pull.
const DefaultPullTimeout = 10 * time.Minute

// Drain modes and timeout policies.
const (
	DrainWeight = "weight" // set weight 0
	DrainState  = "drain"  // set server state drain

	OnTimeoutFail     = "fail"     // restore the server and fail the slot
	OnTimeoutShutdown = "shutdown" // cut the remaining sessions and go on
)

// DrainConfig says how traffic is taken away from a slot.
type DrainConfig struct {
	Mode    string        `mapstructure:"mode"`
	Timeout time.Duration `mapstructure:"timeout"`
	// Grace is how long the server stays at weight 0 (or DRAIN), still
	// serving the clients pinned to it by a cookie or a stick table, before
	// it goes into maintenance, which moves them to other servers. It ends
	// early when the server has no session. 0 (the default) moves them at
	// once; the sessions in flight finish either way.
	Grace     time.Duration `mapstructure:"grace"`
	OnTimeout string        `mapstructure:"on_timeout"`
}

// HealthConfig bounds and shapes the health gate of a new container.
type HealthConfig struct {
	// Timeout bounds the new container's way from start to fully UP in HAProxy.
	Timeout time.Duration `mapstructure:"timeout"`
	// Path is the agent's own HTTP probe; empty means a TCP connect.
	Path string `mapstructure:"path"`
	// Docker says what a container's own HEALTHCHECK counts for: wait (it
	// must pass too, after the probe) or watch (the probe decides). In both,
	// an unhealthy or exited report fails the slot.
	Docker string `mapstructure:"docker"`
	// DockerStartInterval, with Docker wait, is how often haroll runs the
	// HEALTHCHECK's command in the new container itself, beside Docker's
	// own checks (the first comes one HEALTHCHECK interval after the
	// start); the first run that passes ends the wait. 0 waits for
	// Docker's checks.
	DockerStartInterval time.Duration `mapstructure:"docker_start_interval"`
}

// DefaultDockerStartInterval is health.docker_start_interval's default. The
// first run comes as soon as the probe answers; the interval only spaces
// the runs of a check that asks more than the probe: often enough that the
// boot ends within a quarter of a second of the check passing, seldom
// enough that the runs (one exec each, ~50 ms of CPU) cost little.
const DefaultDockerStartInterval = 250 * time.Millisecond

// What a container's Docker HEALTHCHECK counts for (health.docker).
const (
	DockerHealthWait  = "wait"
	DockerHealthWatch = "watch"
)

// SlotConfig pairs one HAProxy server with one container.
type SlotConfig struct {
	Name      string `mapstructure:"name"`
	Backend   string `mapstructure:"backend"`
	Server    string `mapstructure:"server"`
	Container string `mapstructure:"container"`
	// Port is the container port the app listens on; 0 means the container's
	// only exposed port.
	Port int `mapstructure:"port"`
	// Network, when set, makes HAProxy reach the container by its IP on that
	// Docker network instead of a published host port.
	Network string `mapstructure:"network"`
	// Strategy is auto (the default), stop-first or start-first.
	Strategy string `mapstructure:"strategy"`
	// Hooks override the top-level hooks for this slot, hook by hook.
	Hooks HooksConfig `mapstructure:"hooks"`
	// Alt, when set, makes the slot a blue/green pair: Server and
	// Alt.Server are two servers of Backend, one live and one idle (in
	// maintenance). A redeploy starts the new container on the idle side,
	// proves it and gives it the slot's weight before the live side is
	// drained: the backend's capacity never dips.
	Alt *AltConfig `mapstructure:"alt"`
}

// AltConfig is the second server of a blue/green slot.
type AltConfig struct {
	// Server is the idle twin of the slot's server, in the same backend;
	// haproxy.cfg declares it `disabled`.
	Server string `mapstructure:"server"`
	// Port is the host port the container of the alt side publishes (the
	// alt server's port in haproxy.cfg) where the containers publish a
	// fixed host port; the primary side keeps the port the slot's
	// container publishes now. 0: the containers' addresses are not fixed
	// (ephemeral ports, a user network), and the idle server is pointed at
	// the new container with `set server addr`.
	Port int `mapstructure:"port"`
}

// pair reports whether the slot is a blue/green pair.
func (s SlotConfig) pair() bool { return s.Alt != nil }

// twin returns the other server of a pair slot.
func (s SlotConfig) twin(server string) string {
	if server == s.Server {
		return s.Alt.Server
	}
	return s.Server
}

// Replacement strategies of a slot.
const (
	// StrategyAuto is start-first when the old and the new container can
	// run side by side (no fixed host port, own network stack), else
	// stop-first.
	StrategyAuto = "auto"
	// StrategyStopFirst drains, stops the old container, then starts the new.
	StrategyStopFirst = "stop-first"
	// StrategyStartFirst starts the new container while the old one drains,
	// and points HAProxy at it once both are done.
	StrategyStartFirst = "start-first"
	// StrategyBlueGreen is what a slot with an alt server does (it is not
	// a value of strategy): the new container comes up behind the idle
	// server and takes the weight before the live one is drained.
	StrategyBlueGreen = "blue-green"
)

// DefaultConfig returns the defaults every key falls back to.
func DefaultConfig() Config {
	return Config{
		HAProxy:    HAProxyConfig{Socket: "/run/haproxy/admin.sock", Timeout: runtime.DefaultTimeout, Config: DefaultHAProxyConfig, MasterSocket: DefaultMasterSocket},
		Docker:     DockerConfig{Timeout: docker.DefaultTimeout, PullTimeout: DefaultPullTimeout},
		StateDir:   "/var/lib/haroll",
		Drain:      DrainConfig{Mode: DrainWeight, Timeout: 30 * time.Second, OnTimeout: OnTimeoutFail},
		Health:     HealthConfig{Timeout: 60 * time.Second, Path: "/", Docker: DockerHealthWait, DockerStartInterval: DefaultDockerStartInterval},
		MinServing: 1,
		MaxSurge:   1,
		Socket:     "/run/haroll/agent.sock",
		History:    HistoryConfig{MaxPerSlot: DefaultHistoryPerSlot},
		Hooks: HooksConfig{
			PreDrain:    hook.Config{Timeout: hook.DefaultTimeout},
			PostReplace: hook.Config{Timeout: hook.DefaultTimeout},
		},
	}
}

var containerName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Validate reports every problem at once, naming the key and the value.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, val any, why string) {
		errs = append(errs, fmt.Errorf("%s: %v: %s", key, val, why))
	}
	if c.HAProxy.Socket == "" {
		bad("haproxy.socket", `""`, "set the HAProxy stats socket (a path or host:port)")
	} else if _, err := runtime.New(c.HAProxy.Socket, 0); err != nil {
		bad("haproxy.socket", c.HAProxy.Socket, "want an absolute unix socket path or host:port")
	}
	if c.HAProxy.MasterSocket != "" {
		if _, err := runtime.NewMaster(c.HAProxy.MasterSocket, 0); err != nil {
			bad("haproxy.master_socket", c.HAProxy.MasterSocket, "want an absolute unix socket path or host:port of HAProxy's master CLI (-S), or empty")
		}
	}
	if c.HAProxy.Timeout < time.Millisecond {
		bad("haproxy.timeout", c.HAProxy.Timeout, "must be at least 1ms: write it with a unit, e.g. 5s")
	}
	if c.Docker.Timeout < time.Millisecond {
		bad("docker.timeout", c.Docker.Timeout, "must be at least 1ms: write it with a unit, e.g. 30s")
	}
	if c.Docker.PullTimeout <= 0 {
		bad("docker.pull_timeout", c.Docker.PullTimeout, "must be positive: write it with a unit, e.g. 10m; it bounds the pull of an image that is not on the host")
	}
	if c.StateDir == "" {
		bad("state_dir", `""`, "set a directory haroll may write its lock and journal to")
	}
	if c.Drain.Mode != DrainWeight && c.Drain.Mode != DrainState {
		bad("drain.mode", c.Drain.Mode, "want weight or drain")
	}
	if c.Drain.Timeout < time.Millisecond {
		bad("drain.timeout", c.Drain.Timeout, "must be at least 1ms: write it with a unit, e.g. 30s")
	}
	if c.Drain.Grace < 0 || c.Drain.Grace >= c.Drain.Timeout {
		bad("drain.grace", c.Drain.Grace, "must be at least 0 and less than drain.timeout: the sessions in flight need time to end after it")
	}
	if c.HAProxy.Config == "" {
		bad("haproxy.config", `""`, "set the haproxy.cfg HAProxy runs with (a file or a directory of *.cfg)")
	}
	if c.Drain.OnTimeout != OnTimeoutFail && c.Drain.OnTimeout != OnTimeoutShutdown {
		bad("drain.on_timeout", c.Drain.OnTimeout, "want fail or shutdown")
	}
	if c.Health.Timeout < time.Millisecond {
		bad("health.timeout", c.Health.Timeout, "must be at least 1ms: write it with a unit, e.g. 60s")
	}
	if c.Health.Docker != DockerHealthWait && c.Health.Docker != DockerHealthWatch {
		bad("health.docker", c.Health.Docker, "want wait or watch")
	}
	if c.Health.DockerStartInterval != 0 && c.Health.DockerStartInterval < 10*time.Millisecond {
		bad("health.docker_start_interval", c.Health.DockerStartInterval, "must be 0 (wait for Docker's own first check) or at least 10ms: write it with a unit, e.g. 250ms")
	}
	if c.Health.Path != "" && c.Health.Path[0] != '/' {
		bad("health.path", c.Health.Path, `must start with "/" (or be empty for a TCP probe)`)
	}
	if c.MinServing < 0 {
		bad("min_serving", c.MinServing, "must be >= 0")
	}
	if c.MaxSurge < 1 {
		bad("max_surge", c.MaxSurge, "must be at least 1: how many blue/green slots of the host may be in their surge at once")
	}
	if c.History.MaxPerSlot < 1 {
		bad("history.max_per_slot", c.History.MaxPerSlot, "must be at least 1: how many replacements of each slot the host keeps a record of")
	}
	for i, p := range c.AllowedImages {
		if _, err := path.Match(p, ""); err != nil {
			bad(fmt.Sprintf("allowed_images[%d]", i), p, "not a valid pattern: "+err.Error())
		}
	}
	if c.Socket != "" && !filepath.IsAbs(c.Socket) {
		bad("socket", c.Socket, "want an absolute path for the agent's unix socket")
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen", c.Listen, "want host:port, e.g. 0.0.0.0:7443")
		}
	}
	errs = append(errs, c.Hooks.validate("hooks")...)
	if c.Metrics.Listen != "" {
		if err := checkListen(c.Metrics.Listen); err != nil {
			bad("metrics.listen", c.Metrics.Listen, err.Error()+", e.g. 127.0.0.1:9101 or :9101; empty serves no metrics")
		}
	}
	if len(c.Slots) == 0 {
		bad("slots", "[]", "list at least one slot {name, backend, server, container}")
	}
	names, servers, containers := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, s := range c.Slots {
		key := func(k string) string { return fmt.Sprintf("slots[%d].%s", i, k) }
		switch {
		case s.Name == "":
			bad(key("name"), `""`, "every slot needs a name")
		case names[s.Name]:
			bad(key("name"), s.Name, "duplicate slot name")
		}
		names[s.Name] = true
		if err := runtime.ValidateName("backend", s.Backend); err != nil {
			bad(key("backend"), fmt.Sprintf("%q", s.Backend), err.Error())
		}
		if err := runtime.ValidateName("server", s.Server); err != nil {
			bad(key("server"), fmt.Sprintf("%q", s.Server), err.Error())
		}
		if ref := s.Backend + "/" + s.Server; servers[ref] {
			bad(key("server"), ref, "two slots name the same HAProxy server")
		} else {
			servers[ref] = true
		}
		switch {
		case !containerName.MatchString(s.Container):
			bad(key("container"), fmt.Sprintf("%q", s.Container), "not a Docker container name")
		case containers[s.Container]:
			bad(key("container"), s.Container, "two slots name the same container")
		}
		containers[s.Container] = true
		if s.Port < 0 || s.Port > 65535 {
			bad(key("port"), s.Port, "want a container port 1..65535, or 0 for the only exposed port")
		}
		switch s.Strategy {
		case "", StrategyAuto, StrategyStopFirst, StrategyStartFirst:
		default:
			bad(key("strategy"), s.Strategy, "want auto, stop-first or start-first")
		}
		errs = append(errs, s.Hooks.validate(key("hooks"))...)
		if s.Alt != nil {
			errs = append(errs, s.validateAlt(key, servers)...)
		}
	}
	return errors.Join(errs...)
}

// validateAlt checks a pair slot's alt server; servers are the backend/server
// references seen so far, the alt's added.
func (s SlotConfig) validateAlt(key func(string) string, servers map[string]bool) []error {
	var errs []error
	bad := func(k string, val any, why string) { errs = append(errs, fmt.Errorf("%s: %v: %s", key(k), val, why)) }
	if err := runtime.ValidateName("server", s.Alt.Server); err != nil {
		bad("alt.server", fmt.Sprintf("%q", s.Alt.Server), err.Error()+": name the idle twin of the slot's server, declared `disabled` in the same backend")
	} else if s.Alt.Server == s.Server {
		bad("alt.server", s.Alt.Server, "is the slot's own server: a blue/green slot needs a second server in the backend")
	} else if ref := s.Backend + "/" + s.Alt.Server; servers[ref] {
		bad("alt.server", ref, "two slots name the same HAProxy server")
	} else {
		servers[ref] = true
	}
	if s.Alt.Port < 0 || s.Alt.Port > 65535 {
		bad("alt.port", s.Alt.Port, "want the host port the alt side's container publishes (1..65535), or 0 when the containers' addresses are not fixed")
	}
	if s.Strategy == StrategyStopFirst {
		bad("strategy", s.Strategy, "a blue/green slot (alt set) starts the new container beside the old one: remove strategy or alt")
	}
	return errs
}

// checkListen accepts host:port with a port in 1..65535; the host may be
// empty (every interface).
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if strings.ContainsAny(host, " \t/") {
		return errors.New("want host:port with a host name or IP address")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: want 1..65535", port)
	}
	return nil
}

// imageAllowed reports whether image matches one of the allowed patterns.
func (c Config) imageAllowed(image string) bool {
	if len(c.AllowedImages) == 0 {
		return true
	}
	for _, p := range c.AllowedImages {
		if ok, _ := path.Match(p, image); ok {
			return true
		}
	}
	return false
}
