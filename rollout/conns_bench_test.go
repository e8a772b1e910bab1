package rollout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/internal/certs"
	"github.com/haroll/haroll/internal/tlsconf"
)

// The connection memory benchmark measures what one agent connection with
// mutual TLS costs the coordinator: open and idle, then with a Redeploy
// stream under way (a step), with gRPC's default options and with
// DialGRPC's. The agents serve from child processes (see bench_test.go),
// so the resident set measured is the coordinator's.
//
//	go test -run '^$' -bench ConnectionMemory -benchtime 1x ./rollout/
//	HAROLL_BENCH_CONNS=3500 go test -run '^$' -bench ConnectionMemory -benchtime 1x ./rollout/

func BenchmarkConnectionMemory(b *testing.B) {
	n := 2000
	if s := os.Getenv("HAROLL_BENCH_CONNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("HAROLL_BENCH_CONNS: %q", s)
		}
	}
	dir := benchPKI(b)
	tc, err := tlsconf.Client(filepath.Join(dir, "coordinator.crt"), filepath.Join(dir, "coordinator.key"), filepath.Join(dir, certs.CACertFile))
	if err != nil {
		b.Fatal(err)
	}
	creds := grpc.WithTransportCredentials(credentials.NewTLS(tc))
	b.Setenv(tlsDirEnv, dir)
	b.Setenv("HAROLL_BENCH_SLOT_DELAY", "1h") // a stream stays open until cancelled
	addrs := childAgents(b, n)
	for _, v := range []struct {
		name string
		dial Dial
	}{
		{"options=grpc-default", func(_ context.Context, h string) (Agent, error) {
			conn, err := grpc.NewClient(h, creds)
			if err != nil {
				return nil, err
			}
			return NewClient(agentpb.NewAgentClient(conn), conn), nil
		}},
		{"options=haroll", DialGRPC(creds)},
	} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				idle, stream := connectionMemory(b, v.dial, addrs)
				b.ReportMetric(idle/1024, "idle_KiB/conn")
				b.ReportMetric(stream/1024, "stream_KiB/conn")
			}
		})
	}
}

// connectionMemory opens a connection to every agent, then a Redeploy
// stream on each, and returns the resident bytes per connection each
// added, the garbage collected and returned to the system first.
func connectionMemory(b *testing.B, dial Dial, addrs []string) (idle, stream float64) {
	b.Helper()
	base := settledRSS()
	agents := make([]Agent, len(addrs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := range next {
				ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
				a, err := dial(ctx, addrs[i])
				if err == nil {
					err = a.(connector).Connect(ctx)
				}
				cancel()
				if err != nil {
					b.Error(err)
					continue
				}
				agents[i] = a
			}
		})
	}
	for i := range addrs {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, a := range agents {
			if a != nil {
				_ = a.(*Client).Close()
			}
		}
	}()
	if b.Failed() {
		b.FailNow()
	}
	open := settledRSS()

	ctx, cancel := context.WithCancel(b.Context())
	var streams sync.WaitGroup
	req := &agentpb.RedeployRequest{Image: "app:v2", Slots: []string{benchSlots[0]}}
	for _, a := range agents {
		streams.Go(func() { _, _ = a.Redeploy(ctx, req, nil) })
	}
	// The agents answer nothing before the hour is out: wait for every
	// stream to be opened (the resident set stops growing).
	busy := settledRSS()
	for range 20 {
		time.Sleep(250 * time.Millisecond)
		now := settledRSS()
		if now <= busy+busy/200 {
			busy = max(busy, now)
			break
		}
		busy = now
	}
	cancel()
	streams.Wait()
	k := float64(len(addrs))
	return float64(open-base) / k, float64(busy-open) / k
}

// settledRSS is the resident set once the garbage is collected and the
// freed memory returned to the system.
func settledRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	panic(fmt.Sprintf("no VmRSS in /proc/self/status: %q", b))
}
