package rollout

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/internal/hook"
	"github.com/haroll/haroll/internal/tlsconf"
)

// Config is the coordinator's configuration (`haroll rollout --config`).
type Config struct {
	// Hosts are agent addresses, host:port; the host part must be a name
	// or IP address in the agent's certificate.
	Hosts []string `mapstructure:"hosts"`
	// Inventory is a file with one agent address per line; # starts a
	// comment. Its hosts come after Hosts.
	Inventory string    `mapstructure:"inventory"`
	TLS       TLSConfig `mapstructure:"tls"`
	// Insecure dials the agents in plaintext; only for loopback addresses,
	// and only from the --insecure flag.
	Insecure bool `mapstructure:"-"`
	// Batch is the hosts rolled at once: "35%" of the fleet or a count.
	Batch string `mapstructure:"batch"`
	// Canary is an optional first batch, run and judged as a canary.
	Canary CanaryConfig `mapstructure:"canary"`
	// MaxFailures is the failed hosts tolerated before no further batch
	// starts: a count or a percentage; "0" tolerates none.
	MaxFailures    string        `mapstructure:"max_failures"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// AgentKeepalive is how long a call to an agent may stay silent
	// before the coordinator pings it (then gives up after
	// agentpb.ClientKeepaliveTimeout): what finds an agent behind a NAT
	// or firewall that dropped the flow. 0 sends no pings: for agents of
	// an earlier haroll, whose gRPC servers refuse pings closer than 5
	// minutes apart (GOAWAY too_many_pings); better, upgrade them first.
	AgentKeepalive time.Duration `mapstructure:"agent_keepalive"`
	// StepTimeout bounds one step on every host of a batch. It includes
	// the agent's pull of an image it does not have (bounded there by
	// docker.pull_timeout, which the coordinator cannot see): set it above
	// that plus the slot's drain and health timeouts. A call ended by it
	// during the pull stops the pull on the agent, which changed nothing.
	StepTimeout time.Duration `mapstructure:"step_timeout"`
	// Slots to replace, in order; empty means every slot of the first host.
	Slots []string `mapstructure:"slots"`
	// StateFile is where the rollout's progress is persisted after every
	// finished (host, slot) pair, for `haroll rollout --resume`.
	StateFile string `mapstructure:"state_file"`
	// Store is where the fleet lock, the rollout's state, the canary
	// decisions and the history index are kept: StoreFile (beside
	// StateFile, on this machine) or StoreEtcd (Etcd; any machine with
	// this configuration can resume, promote, abort or release).
	Store string     `mapstructure:"store"`
	Etcd  EtcdConfig `mapstructure:"etcd"`
	// Hooks run before the first batch and after the rollout (see Hooks).
	Hooks Hooks `mapstructure:"hooks"`
	// MetricsListen is host:port where the coordinator serves the
	// rollout's progress as Prometheus metrics (GET /metrics) while it
	// runs; empty serves none. An empty host listens on every interface.
	MetricsListen string `mapstructure:"metrics_listen"`
	// OnFailure: what a rollout does once its failures pass max_failures:
	// stop (no further batch), rollback (no further batch, and the hosts of
	// earlier batches are put back on their old image), or pause (wait for
	// `haroll rollout promote` to go on, or `abort` to stop).
	OnFailure string `mapstructure:"on_failure"`
	// Prepull: every host pulls the image before the first drain, and a
	// host that cannot get it stops the rollout with nothing changed.
	Prepull            bool `mapstructure:"prepull"`
	PrepullConcurrency int  `mapstructure:"prepull_concurrency"`
	// Rollback is how `haroll rollout rollback` and on_failure: rollback
	// go: their own batch size.
	Rollback RollbackConfig `mapstructure:"rollback"`
	// ClaimTTL: how long a host stays claimed by a rollout after its last
	// request, should the coordinator die without releasing it.
	ClaimTTL time.Duration `mapstructure:"claim_ttl"`
}

// CanaryConfig is the canary stage of a rollout (see CanaryPolicy).
type CanaryConfig struct {
	// Hosts is the canary batch's size: a count or a share of the fleet;
	// "" for no canary.
	Hosts string `mapstructure:"hosts"`
	// Slots replaced on each canary host before the analysis.
	Slots int `mapstructure:"slots"`
	// Weight is the share of their weight the canaries get: "10%".
	Weight   string        `mapstructure:"weight"`
	Window   time.Duration `mapstructure:"window"`
	Interval time.Duration `mapstructure:"interval"`
	// MaxErrorRate and Margin are rates: "1%" or "0.01".
	MaxErrorRate string `mapstructure:"max_error_rate"`
	Margin       string `mapstructure:"margin"`
	MinRequests  int64  `mapstructure:"min_requests"`
	// Pause waits after a passing analysis for `haroll rollout promote`.
	Pause bool `mapstructure:"pause"`
}

// Stores (Config.Store).
const (
	StoreFile = "file"
	StoreEtcd = "etcd"
)

// EtcdConfig is how the coordinator reaches etcd (store: etcd).
type EtcdConfig struct {
	// Endpoints are etcd's client URLs: https://10.0.0.5:2379 (or
	// http:// on loopback only).
	Endpoints []string `mapstructure:"endpoints"`
	// Prefix is put before every key: one per fleet (default /haroll).
	Prefix string `mapstructure:"prefix"`
	// TLS is the client's mutual TLS: all three files, or none (only for
	// http:// endpoints on loopback).
	TLS         TLSConfig     `mapstructure:"tls"`
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// LockTTL is the fleet lock's lease: a crashed coordinator's lock
	// lapses after it.
	LockTTL time.Duration `mapstructure:"lock_ttl"`
}

// TLSConfig is the coordinator's client certificate and the CA that signed
// the agents' certificates.
type TLSConfig struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
	CA   string `mapstructure:"ca"`
}

// DefaultConfig is the configuration before the file, environment and
// flags are applied.
func DefaultConfig() Config {
	return Config{
		Batch:          "35%",
		MaxFailures:    "0",
		ConnectTimeout: 5 * time.Second,
		AgentKeepalive: agentpb.ClientKeepaliveTime,
		StepTimeout:    10 * time.Minute,
		StateFile:      DefaultStateFile,
		Store:          StoreFile,
		Etcd:           EtcdConfig{Prefix: DefaultEtcdPrefix, DialTimeout: 5 * time.Second, LockTTL: DefaultLockTTL},
		Canary: CanaryConfig{Slots: 1, Weight: "10%", Window: 2 * time.Minute, Interval: 5 * time.Second,
			MaxErrorRate: "1%", Margin: "0.5%", MinRequests: 20},
		Hooks:     Hooks{Pre: hook.Config{Timeout: hook.DefaultTimeout}, Post: hook.Config{Timeout: hook.DefaultTimeout}},
		OnFailure: OnFailureStop, Prepull: true, PrepullConcurrency: DefaultPrepullConcurrency,
		Rollback: RollbackConfig{Batch: "50%"}, ClaimTTL: time.Hour,
	}
}

// DefaultStateFile is where the coordinator keeps a rollout's progress.
const DefaultStateFile = "/var/lib/haroll/rollout.json"

// Validate reports every problem at once, each naming its key and value.
// It reads no file: ReadHosts reads the inventory.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Hosts) == 0 && c.Inventory == "" {
		bad("hosts: empty and no inventory: list the agents (host:port) in hosts or in an inventory file")
	}
	for i, h := range c.Hosts {
		if err := checkAddr(h); err != nil {
			bad("hosts[%d]: %q: %v", i, h, err)
		}
	}
	if _, err := ParseSize(c.Batch); err != nil {
		bad("batch: %w", err)
	}
	if c.Canary.Hosts != "" {
		if _, err := ParseSize(c.Canary.Hosts); err != nil {
			bad("canary.hosts: %w", err)
		}
	} else if c.Canary.Pause {
		bad("canary.pause: set, but there is no canary: set canary.hosts (--canary) too")
	}
	if _, err := c.CanaryPolicy(); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseMaxFailures(c.MaxFailures); err != nil {
		bad("max_failures: %w", err)
	}
	if c.ConnectTimeout <= 0 {
		bad("connect_timeout: %s: must be positive", c.ConnectTimeout)
	}
	if c.StepTimeout <= 0 {
		bad("step_timeout: %s: must be positive", c.StepTimeout)
	}
	if k := c.AgentKeepalive; k != 0 && k < agentpb.ServerKeepaliveMinTime {
		bad("agent_keepalive: %s: the agents accept pings at least %s apart (closer ones end the connection): use %s or more, or 0 for none",
			k, agentpb.ServerKeepaliveMinTime, agentpb.ServerKeepaliveMinTime)
	}
	if !c.Insecure {
		for _, kv := range [][2]string{{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}, {"tls.ca", c.TLS.CA}} {
			if key, v := kv[0], kv[1]; v == "" {
				bad("%s: empty: the coordinator needs a client certificate, its key and the agents' CA (or --insecure on loopback)", key)
			}
		}
	}
	if c.StateFile == "" {
		bad("state_file: empty: the coordinator records its progress there, for --resume (default %s)", DefaultStateFile)
	}
	switch c.Store {
	case "", StoreFile:
	case StoreEtcd:
		errs = append(errs, c.Etcd.validate()...)
	default:
		bad("store: %q: want %s (beside state_file, default) or %s (see etcd)", c.Store, StoreFile, StoreEtcd)
	}
	if c.MetricsListen != "" {
		if err := checkListen(c.MetricsListen); err != nil {
			bad("metrics_listen: %q: %v, e.g. 127.0.0.1:9102 or :9102; empty serves no metrics", c.MetricsListen, err)
		}
	}
	seen := map[string]bool{}
	for i, s := range c.Slots {
		switch {
		case s == "" || strings.ContainsAny(s, " \t\n;"):
			bad("slots[%d]: %q: not a slot name", i, s)
		case seen[s]:
			bad("slots[%d]: %q: listed twice", i, s)
		}
		seen[s] = true
	}
	errs = append(errs, c.Hooks.validate("hooks")...)
	errs = append(errs, c.validateFleetOps()...)
	return errors.Join(errs...)
}

// checkAddr accepts host:port with a non-empty host and a port in 1..65535.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" || strings.ContainsAny(host, " \t/") {
		return errors.New("want host:port with a host name or IP address")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: want 1..65535", port)
	}
	return nil
}

// checkListen accepts host:port with a port in 1..65535; unlike checkAddr,
// the host may be empty (every interface).
func checkListen(addr string) error {
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		addr = "0.0.0.0:" + port
	}
	return checkAddr(addr)
}

// ReadHosts returns Hosts followed by the inventory's hosts, in order.
// Every bad line and every duplicate is reported, with file and line.
func (c Config) ReadHosts() ([]string, error) {
	var hosts []string
	where := map[string]string{}
	var errs []error
	add := func(h, here string) {
		if first, ok := where[h]; ok {
			errs = append(errs, fmt.Errorf("%s: %q: already listed at %s", here, h, first))
			return
		}
		where[h] = here
		hosts = append(hosts, h)
	}
	for i, h := range c.Hosts {
		add(h, fmt.Sprintf("hosts[%d]", i))
	}
	if c.Inventory != "" {
		f, err := os.Open(c.Inventory)
		if err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			here := fmt.Sprintf("inventory %s:%d", c.Inventory, n)
			if err := checkAddr(line); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q: %v", here, line, err))
				continue
			}
			add(line, here)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("inventory %s: %w", c.Inventory, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no host: hosts is empty and inventory %s lists none", c.Inventory)
	}
	return hosts, nil
}

// Strategy parses Batch and Canary, and MaxFailures; call after Validate.
func (c Config) Strategy() (Strategy, Threshold, error) {
	var s Strategy
	var err error
	if s.Batch, err = ParseSize(c.Batch); err != nil {
		return s, Threshold{}, fmt.Errorf("batch: %w", err)
	}
	if c.Canary.Hosts != "" {
		if s.Canary, err = ParseSize(c.Canary.Hosts); err != nil {
			return s, Threshold{}, fmt.Errorf("canary.hosts: %w", err)
		}
	}
	t, err := ParseMaxFailures(c.MaxFailures)
	if err != nil {
		return s, Threshold{}, fmt.Errorf("max_failures: %w", err)
	}
	return s, t, nil
}

// CanaryPolicy is how the canary batch is run and judged; nil when there is
// no canary (canary.hosts empty). Every bad key is reported at once.
func (c Config) CanaryPolicy() (*CanaryPolicy, error) {
	k := c.Canary
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	p := CanaryPolicy{Slots: k.Slots, Window: k.Window, Interval: k.Interval, MinRequests: k.MinRequests, Pause: k.Pause}
	if n, pct, err := parseAmount(k.Weight); err != nil || !pct || n < 1 {
		bad("canary.weight: %q: want a share of the weight in 1%%..100%%, e.g. 10%%", k.Weight)
	} else {
		p.WeightPercent = n
	}
	if k.Slots < 1 {
		bad("canary.slots: %d: want at least 1 slot per canary host", k.Slots)
	}
	if k.Window <= 0 || k.Window > time.Hour {
		bad("canary.window: %s: want a duration in (0, 1h], e.g. 2m", k.Window)
	}
	if k.Interval != 0 && (k.Interval < 100*time.Millisecond || k.Interval > k.Window/2) {
		bad("canary.interval: %s: want at least 100ms and at most half of canary.window (%s), so that the window holds two reads or more", k.Interval, k.Window)
	}
	var err error
	if p.MaxErrorRate, err = parseRate(k.MaxErrorRate); err != nil {
		bad("canary.max_error_rate: %w", err)
	}
	if p.Margin, err = parseRate(k.Margin); err != nil {
		bad("canary.margin: %w", err)
	}
	if k.MinRequests < 0 {
		bad("canary.min_requests: %d: must be >= 0", k.MinRequests)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if k.Hosts == "" {
		return nil, nil
	}
	return &p, nil
}

// parseRate reads a rate as a percentage ("1%", "0.5%") or a fraction
// ("0.01"), in 0..1.
func parseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	scale := 1.0
	if strings.HasSuffix(t, "%") {
		t, scale = strings.TrimSuffix(t, "%"), 100
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f/scale > 1 || math.IsNaN(f) {
		return 0, fmt.Errorf("%q: want a rate in 0..1 or 0%%..100%%, e.g. 1%% or 0.01", s)
	}
	return f / scale, nil
}

// validate reports every problem of the etcd keys.
func (e EtcdConfig) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	files := 0
	for _, f := range []string{e.TLS.Cert, e.TLS.Key, e.TLS.CA} {
		if f != "" {
			files++
		}
	}
	if files != 0 && files != 3 {
		bad("etcd.tls: set cert, key and ca together (mutual TLS), or none for http:// on loopback")
	}
	if len(e.Endpoints) == 0 {
		bad("etcd.endpoints: empty: list etcd's client URLs, e.g. [https://10.0.0.5:2379]")
	}
	for i, ep := range e.Endpoints {
		scheme, addr, ok := strings.Cut(ep, "://")
		switch {
		case !ok || (scheme != "http" && scheme != "https"):
			bad("etcd.endpoints[%d]: %q: want https://host:port (or http:// on loopback)", i, ep)
		case checkAddr(addr) != nil:
			bad("etcd.endpoints[%d]: %q: %v", i, ep, checkAddr(addr))
		case scheme == "https" && files == 0:
			bad("etcd.endpoints[%d]: %q: https needs etcd.tls (cert, key and ca)", i, ep)
		case scheme == "http" && files == 3:
			bad("etcd.endpoints[%d]: %q: etcd.tls is set: use https://", i, ep)
		case scheme == "http" && !tlsconf.IsLoopback(addr):
			bad("etcd.endpoints[%d]: %q: plaintext only on loopback: use https:// with etcd.tls", i, ep)
		}
	}
	if !strings.HasPrefix(e.Prefix, "/") || strings.HasSuffix(e.Prefix, "/") || strings.ContainsAny(e.Prefix, " \t\n") {
		bad("etcd.prefix: %q: want a key prefix that starts with / and does not end with one, e.g. /haroll/prod", e.Prefix)
	}
	if e.DialTimeout <= 0 {
		bad("etcd.dial_timeout: %s: must be positive", e.DialTimeout)
	}
	if e.LockTTL < 2*time.Second || e.LockTTL > time.Hour || e.LockTTL%time.Second != 0 {
		bad("etcd.lock_ttl: %s: want whole seconds in [2s, 1h]: a crashed coordinator's lock lapses after it", e.LockTTL)
	}
	return errs
}
