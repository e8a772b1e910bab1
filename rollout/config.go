package rollout

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
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
	// Canary is an optional first batch of its own size; "" for none.
	Canary string `mapstructure:"canary"`
	// MaxFailures is the failed hosts tolerated before no further batch
	// starts: a count or a percentage; "0" tolerates none.
	MaxFailures    string        `mapstructure:"max_failures"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	StepTimeout    time.Duration `mapstructure:"step_timeout"`
	// Slots to replace, in order; empty means every slot of the first host.
	Slots []string `mapstructure:"slots"`
	// StateFile is where the rollout's progress is persisted after every
	// finished (host, slot) pair, for `haroll rollout --resume`.
	StateFile string `mapstructure:"state_file"`
	// MetricsListen is host:port where the coordinator serves the
	// rollout's progress as Prometheus metrics (GET /metrics) while it
	// runs; empty serves none. An empty host listens on every interface.
	MetricsListen string `mapstructure:"metrics_listen"`
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
		StepTimeout:    10 * time.Minute,
		StateFile:      DefaultStateFile,
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
	if c.Canary != "" {
		if _, err := ParseSize(c.Canary); err != nil {
			bad("canary: %w", err)
		}
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
	if c.Canary != "" {
		if s.Canary, err = ParseSize(c.Canary); err != nil {
			return s, Threshold{}, fmt.Errorf("canary: %w", err)
		}
	}
	t, err := ParseMaxFailures(c.MaxFailures)
	if err != nil {
		return s, Threshold{}, fmt.Errorf("max_failures: %w", err)
	}
	return s, t, nil
}
