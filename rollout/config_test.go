package rollout

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Hosts = []string{"web-1.example.com:7443", "10.0.0.2:7443"}
	c.TLS = TLSConfig{Cert: "coordinator.crt", Key: "coordinator.key", CA: "ca.crt"}
	return c
}

func TestTheDefaultsWithHostsAndCertificatesAreValid(t *testing.T) {
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, th, err := c.Strategy()
	if err != nil || s.Batch.String() != "35%" || !s.Canary.IsZero() || th.String() != "0" {
		t.Fatalf("strategy %+v %v %v", s, th, err)
	}
	if c.ConnectTimeout != 5*time.Second || c.StepTimeout != 10*time.Minute {
		t.Fatalf("timeouts %s %s", c.ConnectTimeout, c.StepTimeout)
	}
}

func TestValidateReportsEveryProblemWithItsKeyAndValue(t *testing.T) {
	c := Config{Hosts: []string{"web-1", "web-2:99999", ":7443"}, Batch: "0%", Canary: CanaryConfig{Hosts: "35.5%"},
		MaxFailures: "-1", StepTimeout: -time.Second, Slots: []string{"a", "a", "b c"}}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`hosts[0]: "web-1": want host:port`, `hosts[1]: "web-2:99999"`, `hosts[2]: ":7443"`,
		`batch: invalid size "0%"`, `canary.hosts: invalid size "35.5%"`, `max_failures: invalid size "-1"`,
		"connect_timeout: 0s", "step_timeout: -1s", "tls.cert: empty", "tls.key: empty", "tls.ca: empty",
		`slots[1]: "a": listed twice`, `slots[2]: "b c"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
	if !errors.Is(err, ErrInvalidSize) {
		t.Error("a bad size does not wrap ErrInvalidSize")
	}
}

func TestInsecureNeedsNoCertificates(t *testing.T) {
	c := DefaultConfig()
	c.Hosts, c.Insecure = []string{"127.0.0.1:7443"}, true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTheInventoryAddsOneHostPerLineAfterHosts(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "fleet.txt")
	body := "# the web tier\nweb-2.example.com:7443\n\n  10.0.0.3:7443   # rack 2\n[::1]:7443\n"
	if err := os.WriteFile(inv, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c := validConfig()
	c.Hosts, c.Inventory = []string{"web-1.example.com:7443"}, inv
	hosts, err := c.ReadHosts()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"web-1.example.com:7443", "web-2.example.com:7443", "10.0.0.3:7443", "[::1]:7443"}
	if !reflect.DeepEqual(hosts, want) {
		t.Fatalf("got %v, want %v", hosts, want)
	}
}

func TestABadOrRepeatedInventoryLineIsReportedWithItsLine(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "fleet.txt")
	if err := os.WriteFile(inv, []byte("a:1\nnoport\nb:2\na:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := validConfig()
	c.Hosts, c.Inventory = []string{"b:2"}, inv
	_, err := c.ReadHosts()
	for _, want := range []string{inv + `:2: "noport"`, inv + `:3: "b:2": already listed at hosts[0]`, inv + `:4: "a:1": already listed at inventory ` + inv + ":1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	c.Inventory = filepath.Join(t.TempDir(), "missing")
	if _, err := c.ReadHosts(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing inventory: %v", err)
	}
}

func TestMetricsListenMustBeHostPort(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:9102": true, ":9102": true, "[::1]:9102": true,
		"9102": false, "127.0.0.1:0": false, "127.0.0.1:99999": false, "a b:1": false,
	} {
		c := validConfig()
		c.MetricsListen = addr
		err := c.Validate()
		if ok && err != nil {
			t.Errorf("%q refused: %v", addr, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), `metrics_listen: "`+addr+`"`)) {
			t.Errorf("%q: got %v, want an error naming metrics_listen", addr, err)
		}
	}
}

func TestAgentKeepaliveIsZeroOrAtLeastWhatTheAgentsAccept(t *testing.T) {
	for _, tc := range []struct {
		keepalive time.Duration
		ok        bool
	}{{0, true}, {agentpb.ServerKeepaliveMinTime, true}, {time.Minute, true}, {5 * time.Second, false}} {
		c := validConfig()
		c.AgentKeepalive = tc.keepalive
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("agent_keepalive %s: %v", tc.keepalive, err)
		}
		if err != nil && !strings.Contains(err.Error(), "agent_keepalive: 5s") {
			t.Errorf("the error does not name the key and value: %v", err)
		}
	}
}

func TestAnEtcdStoreNeedsEndpointsAndMutualTLSOffLoopback(t *testing.T) {
	c := validConfig()
	c.Store = StoreEtcd
	c.Etcd.Endpoints = []string{"https://10.0.0.5:2379", "http://10.0.0.6:2379", "10.0.0.7:2379", "https://:2379"}
	c.Etcd.TLS = TLSConfig{Cert: "etcd.crt"}
	c.Etcd.Prefix = "haroll/"
	c.Etcd.LockTTL = 1500 * time.Millisecond
	c.Etcd.DialTimeout = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"etcd.tls: set cert, key and ca together", `etcd.endpoints[1]: "http://10.0.0.6:2379"`,
		`etcd.endpoints[2]: "10.0.0.7:2379": want https://host:port`, `etcd.endpoints[3]: "https://:2379"`,
		`etcd.prefix: "haroll/"`, "etcd.lock_ttl: 1.5s", "etcd.dial_timeout: 0s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}

	c.Etcd = DefaultConfig().Etcd
	c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
	if err := c.Validate(); err != nil {
		t.Errorf("plaintext etcd on loopback: %v", err)
	}
	c.Etcd.Endpoints = []string{"https://10.0.0.5:2379"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "https needs etcd.tls") {
		t.Errorf("https without etcd.tls: %v", err)
	}
	c.Etcd.TLS = TLSConfig{Cert: "etcd.crt", Key: "etcd.key", CA: "ca.crt"}
	if err := c.Validate(); err != nil {
		t.Errorf("https with mutual TLS: %v", err)
	}
	c.Store = "consul"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `store: "consul"`) {
		t.Errorf("an unknown store: %v", err)
	}
}
