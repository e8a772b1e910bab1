package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haroll/haroll/internal/certs"
)

// FleetOptions describe several simulated hosts, each with its own HAProxy,
// app containers and `haroll agent` process serving gRPC with mutual TLS.
type FleetOptions struct {
	Dir   string
	Bin   string // the haroll binary
	Name  string // prefix of every host's containers
	Hosts int
	Host  HostOptions // template: Dir and Name are set per host
	// HostFor, when set, adjusts host i's options (0-based) after the
	// template is copied: a host on a Docker engine of its own, say.
	HostFor func(i int, o *HostOptions)
}

// Fleet is a running set of simulated hosts and their agents.
type Fleet struct {
	Hosts  []*Host
	Agents []*AgentProcess
	// PKI holds ca.crt, agent-N.{crt,key}, coordinator.{crt,key} and a
	// foreign CA's client certificate (stranger.{crt,key}).
	PKI string
	// CoordinatorYAML is a `haroll rollout` config listing every agent,
	// with its state file at StateFile.
	CoordinatorYAML string
	StateFile       string
}

// AgentProcess is one `haroll agent` child process.
type AgentProcess struct {
	Cmd    *exec.Cmd
	Addr   string // host:port of its mutual-TLS listener
	LogPth string
	done   chan struct{}
}

// StartFleet makes the certificates, starts the hosts in parallel, then an
// agent for each. On error everything started is stopped.
func StartFleet(ctx context.Context, o FleetOptions) (f *Fleet, err error) {
	f = &Fleet{PKI: filepath.Join(o.Dir, "pki")}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if err := makePKI(f.PKI, o.Hosts); err != nil {
		return f, err
	}
	f.Hosts = make([]*Host, o.Hosts)
	errs := make([]error, o.Hosts)
	var wg sync.WaitGroup
	for i := range o.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ho := o.Host
			ho.Dir = filepath.Join(o.Dir, fmt.Sprintf("h%d", i+1))
			ho.Name = fmt.Sprintf("%sh%d", o.Name, i+1)
			if o.HostFor != nil {
				o.HostFor(i, &ho)
			}
			f.Hosts[i], errs[i] = StartHost(ctx, ho)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, h := range f.Hosts {
			if h != nil {
				h.Close()
			}
		}
		f.Hosts = nil
		return f, err
	}
	var addrs []string
	for i, h := range f.Hosts {
		port, err := FreePort()
		if err != nil {
			return f, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		name := fmt.Sprintf("agent-%d", i+1)
		if err := h.AppendAgentConfig(fmt.Sprintf("listen: %s\ntls:\n  cert: %s\n  key: %s\n  client_ca: %s\n",
			addr, filepath.Join(f.PKI, name+".crt"), filepath.Join(f.PKI, name+".key"), filepath.Join(f.PKI, "ca.crt"))); err != nil {
			return f, err
		}
		a, err := StartAgent(ctx, o.Bin, h, addr)
		if err != nil {
			return f, err
		}
		f.Agents = append(f.Agents, a)
		addrs = append(addrs, addr)
	}
	f.CoordinatorYAML = filepath.Join(o.Dir, "coordinator.yaml")
	f.StateFile = filepath.Join(o.Dir, "rollout.json")
	body := fmt.Sprintf("hosts:\n  - %s\ntls:\n  cert: %s\n  key: %s\n  ca: %s\nconnect_timeout: 5s\nstep_timeout: 2m\nstate_file: %s\n",
		strings.Join(addrs, "\n  - "), filepath.Join(f.PKI, "coordinator.crt"), filepath.Join(f.PKI, "coordinator.key"), filepath.Join(f.PKI, "ca.crt"),
		f.StateFile)
	return f, os.WriteFile(f.CoordinatorYAML, []byte(body), 0o644)
}

// makePKI issues a CA, one server certificate per agent (for 127.0.0.1), a
// coordinator client certificate, and a client certificate from another CA.
func makePKI(dir string, hosts int) error {
	if err := certs.NewCA(dir, "haroll-test-ca", 24*time.Hour); err != nil {
		return err
	}
	for i := range hosts {
		name := fmt.Sprintf("agent-%d", i+1)
		if err := certs.Issue(dir, dir, name, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, certs.Server, 24*time.Hour); err != nil {
			return err
		}
	}
	if err := certs.Issue(dir, dir, "coordinator", nil, nil, certs.Client, 24*time.Hour); err != nil {
		return err
	}
	other := filepath.Join(dir, "other-ca")
	if err := certs.NewCA(other, "someone-else", 24*time.Hour); err != nil {
		return err
	}
	return certs.Issue(other, dir, "stranger", nil, nil, certs.Client, 24*time.Hour)
}

// StartAgent starts `haroll agent` for h and waits until its unix socket and
// TCP listener (addr; "" when it has none) accept connections.
func StartAgent(ctx context.Context, bin string, h *Host, addr string) (*AgentProcess, error) {
	logPath := filepath.Join(h.Opts.Dir, "agent.log")
	// Appended: a restarted agent's log follows its predecessor's.
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "agent", "--config", h.AgentYAML, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &AgentProcess{Cmd: cmd, Addr: addr, LogPth: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(a.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c1, err1 := net.Dial("unix", h.AgentSocket())
		var c2 net.Conn
		var err2 error
		if addr != "" { // "" for an agent with no TCP listener
			c2, err2 = net.Dial("tcp", addr)
		}
		for _, c := range []net.Conn{c1, c2} {
			if c != nil {
				c.Close()
			}
		}
		if err1 == nil && err2 == nil {
			return a, nil
		}
		select {
		case <-a.done:
			return nil, fmt.Errorf("haroll agent for %s exited: %s", h.Opts.Name, a.Log())
		case <-ctx.Done():
			a.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.Stop()
			return nil, fmt.Errorf("haroll agent for %s did not listen within 15s: %s", h.Opts.Name, a.Log())
		}
	}
}

// Log returns the agent's output so far.
func (a *AgentProcess) Log() string {
	b, _ := os.ReadFile(a.LogPth)
	return string(b)
}

// Stop sends SIGTERM to this agent's process and waits up to two minutes
// (it rolls back a slot in progress first), then kills it.
func (a *AgentProcess) Stop() error {
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return nil
	case <-time.After(2 * time.Minute):
		_ = a.Cmd.Process.Kill()
		<-a.done
		return errors.New("agent did not stop within 2m after SIGTERM: killed")
	}
}

// Exited reports whether the process has ended.
func (a *AgentProcess) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Close stops every agent and host.
func (f *Fleet) Close() {
	for _, a := range f.Agents {
		_ = a.Stop()
	}
	var wg sync.WaitGroup
	for _, h := range f.Hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.Close() }()
	}
	wg.Wait()
}

// RestartAgent stops agent i (0-based) with SIGTERM and starts it again on
// the same configuration and address, as a host's service manager would.
func (f *Fleet) RestartAgent(ctx context.Context, bin string, i int) error {
	old := f.Agents[i]
	if err := old.Stop(); err != nil {
		return err
	}
	a, err := StartAgent(ctx, bin, f.Hosts[i], old.Addr)
	if err != nil {
		return err
	}
	f.Agents[i] = a
	return nil
}
