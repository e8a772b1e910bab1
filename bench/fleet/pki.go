package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// coordinatorName is the coordinator's certificate name, the one the agents
// allow.
const coordinatorName = "coordinator"

// pki is the mutual TLS material `haroll certs` made for the bench.
type pki struct {
	ca                              string
	agentCert, agentKey             string
	coordinatorCert, coordinatorKey string
}

// makePKI runs `bin certs` as an operator would: a CA in dir, one agent
// server certificate valid for 127.0.0.1 (every simulated agent listens
// there) and the coordinator's client certificate.
func makePKI(ctx context.Context, bin, dir string) (pki, error) {
	p := pki{
		ca:        filepath.Join(dir, "ca.crt"),
		agentCert: filepath.Join(dir, "agent.crt"), agentKey: filepath.Join(dir, "agent.key"),
		coordinatorCert: filepath.Join(dir, coordinatorName+".crt"), coordinatorKey: filepath.Join(dir, coordinatorName+".key"),
	}
	for _, args := range [][]string{
		{"certs", "ca", "--dir", dir},
		{"certs", "agent", "--ca-dir", dir, "--out", dir, "--name", "agent", "--host", "127.0.0.1"},
		{"certs", "coordinator", "--ca-dir", dir, "--out", dir, "--name", coordinatorName},
	} {
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			return p, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return p, nil
}
