package main

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/internal/certs"
	"github.com/haroll/haroll/internal/tlsconf"
	"github.com/haroll/haroll/rollout"
)

// testPKI makes a CA, the agents' server certificate for 127.0.0.1, and
// two client certificates: the coordinator's and another one.
func testPKI(t *testing.T) (p pki, other [2]string) {
	t.Helper()
	dir := t.TempDir()
	const year = 365 * 24 * time.Hour
	if err := certs.NewCA(dir, "test-ca", year); err != nil {
		t.Fatal(err)
	}
	if err := certs.Issue(dir, dir, "agent", nil, []net.IP{net.ParseIP("127.0.0.1")}, certs.Server, year); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{coordinatorName, "intruder"} {
		if err := certs.Issue(dir, dir, name, nil, nil, certs.Client, year); err != nil {
			t.Fatal(err)
		}
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	return pki{ca: f("ca.crt"), agentCert: f("agent.crt"), agentKey: f("agent.key"),
		coordinatorCert: f(coordinatorName + ".crt"), coordinatorKey: f(coordinatorName + ".key"),
	}, [2]string{f("intruder.crt"), f("intruder.key")}
}

// dialTLS returns the coordinator's client for addr with the given client
// certificate.
func dialTLS(t *testing.T, addr, cert, key, ca string) *rollout.Client {
	t.Helper()
	tc, err := tlsconf.Client(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	c := rollout.NewClient(agentpb.NewAgentClient(conn), conn)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAChildServesItsAgentsOverMutualTLSToTheCoordinatorOnlyAndWritesTheirCalls(t *testing.T) {
	p, intruder := testPKI(t)
	spec := childSpec{First: 10, Count: 3, Seed: 1, SlotMin: 10 * time.Millisecond, SlotMax: 20 * time.Millisecond,
		TLS:   agentTLS{Cert: p.agentCert, Key: p.agentKey, ClientCA: p.ca, AllowedClients: []string{coordinatorName}},
		Calls: filepath.Join(t.TempDir(), "calls.txt")}
	stopR, stopW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveAgents(spec, stopR, outW); outW.Close() }()
	var addrs []string
	sc := bufio.NewScanner(outR)
	for sc.Scan() && sc.Text() != readyLine {
		addrs = append(addrs, sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	if len(addrs) != 3 {
		t.Fatalf("child printed %v, want 3 addresses", addrs)
	}

	c := dialTLS(t, addrs[1], p.coordinatorCert, p.coordinatorKey, p.ca)
	if _, err := c.Redeploy(t.Context(), &agentpb.RedeployRequest{Image: image, Slots: []string{"app-3"}}, nil); err != nil {
		t.Fatalf("the coordinator's redeploy: %v", err)
	}
	if _, err := dialTLS(t, addrs[0], intruder[0], intruder[1], p.ca).Status(t.Context()); err == nil {
		t.Error("a client certificate of another name was served")
	}

	stopW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cs, err := readCalls(spec.Calls)
	if err != nil {
		t.Fatal(err)
	}
	want := slotTimes(1, 11, spec.SlotMin, spec.SlotMax)[2]
	if len(cs) != 1 || cs[0].Index != 11 || cs[0].Slot != "app-3" || cs[0].SlotDur < want {
		t.Errorf("calls %+v, want agent 11's app-3, at least its slot time %s", cs, want)
	}
}
