package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/internal/tlsconf"
)

// childEnv makes the bench program a child that serves agents: its value is
// the JSON of a childSpec.
const childEnv = "HAROLL_BENCH_FLEET_CHILD"

// readyLine ends the addresses a child prints on its stdout.
const readyLine = "ready"

// childSpec is what a child serves: agents First..First+Count-1 of the
// fleet, each on its own 127.0.0.1 port, with mutual TLS, and where it
// writes their calls when its stdin closes.
type childSpec struct {
	First   int           `json:"first"`
	Count   int           `json:"count"`
	Seed    uint64        `json:"seed"`
	SlotMin time.Duration `json:"slot_min"`
	SlotMax time.Duration `json:"slot_max"`
	TLS     agentTLS      `json:"tls"`
	Calls   string        `json:"calls"`
}

// agentTLS is the agents' server certificate, key, the CA their clients'
// certificates must come from, and the client names they allow.
type agentTLS struct {
	Cert           string   `json:"cert"`
	Key            string   `json:"key"`
	ClientCA       string   `json:"client_ca"`
	AllowedClients []string `json:"allowed_clients"`
}

// serveChild is the child process: it serves spec's agents, prints one
// address per line and then readyLine, serves until its stdin closes, then
// writes the agents' calls to spec.Calls. It returns the exit status.
func serveChild(specJSON string) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "bench child: %s: %v\n", childEnv, err)
		return 2
	}
	if err := serveAgents(spec, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench child (agents %d..%d): %v\n", spec.First, spec.First+spec.Count-1, err)
		return 1
	}
	return 0
}

// serveAgents serves spec's agents until stop reaches EOF.
func serveAgents(spec childSpec, stop io.Reader, out io.Writer) error {
	if err := raiseFileLimit(); err != nil {
		return err
	}
	// As the agent daemon does: one TLS configuration, mutual TLS with an
	// allowlist of client names.
	tc, err := tlsconf.Server(spec.TLS.Cert, spec.TLS.Key, spec.TLS.ClientCA, spec.TLS.AllowedClients)
	if err != nil {
		return err
	}
	creds := credentials.NewTLS(tc)
	hs := health.NewServer()
	recorded := &calls{}
	servers := make([]*grpc.Server, 0, spec.Count)
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	w := bufio.NewWriter(out)
	for i := spec.First; i < spec.First+spec.Count; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("agent %d: listen: %w (RLIMIT_NOFILE too low? lower -per-child)", i, err)
		}
		// The keepalive a real agent's listener enforces (agent/daemon).
		s := grpc.NewServer(append(agentpb.ServerKeepalive(), grpc.Creds(creds))...)
		agentpb.RegisterAgentServer(s, newFakeAgent(i, slotTimes(spec.Seed, i, spec.SlotMin, spec.SlotMax), recorded))
		healthpb.RegisterHealthServer(s, hs)
		servers = append(servers, s)
		go func() { _ = s.Serve(l) }()
		fmt.Fprintln(w, l.Addr().String())
	}
	fmt.Fprintln(w, readyLine)
	if err := w.Flush(); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, stop)
	return writeCalls(spec.Calls, recorded.list())
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard one: every agent
// holds a listener and its coordinator's connection.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("setrlimit RLIMIT_NOFILE %d: %w", l.Max, err)
	}
	return nil
}
