package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestATCPListenerOnEveryAddressIsProbedOnLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	probe := probeTCP(l.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := probe(ctx); err != nil {
		t.Fatalf("listening: %v", err)
	}
	l.Close()
	if err := probe(ctx); err == nil || !strings.Contains(err.Error(), "the coordinator cannot reach the agent") {
		t.Fatalf("closed: got %v", err)
	}
}

func TestLivenessWithoutListenersChecksOnlyTheStateDir(t *testing.T) {
	dir := t.TempDir()
	l := &liveness{stateDir: dir}
	if err := l.check(context.Background()); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l.stateDir = file
	if err := l.check(context.Background()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a file as state_dir: got %v", err)
	}
}
