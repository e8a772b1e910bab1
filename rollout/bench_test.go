package rollout

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/haroll/haroll/internal/certs"
	"github.com/haroll/haroll/internal/tlsconf"
)

// The rollout benchmark drives N real gRPC agent servers on loopback through
// the real executor and gRPC client: 3 slots per agent, 20 ms per slot,
// batch 35%. By default the agents run in child processes (this test binary
// re-executed with HAROLL_BENCH_SERVE=N), so the CPU time and memory
// reported are the coordinator's alone.
//
//	go test -run '^$' -bench 'Rollout1000Agents' -benchtime 3x ./rollout/
//	HAROLL_BENCH_AGENTS=10000 go test -run '^$' -bench 'RolloutAgents' -benchtime 1x -timeout 30m ./rollout/
//
// HAROLL_BENCH_TLS=1 serves and dials the child-process agents with mutual
// TLS, with certificates made as `haroll certs` makes them.

const (
	// benchAgentsPerChild keeps each child under RLIMIT_NOFILE: a listener
	// and an accepted connection per agent.
	benchAgentsPerChild = 4000
	serveEnv            = "HAROLL_BENCH_SERVE"
)

var benchSlots = []string{"app-1", "app-2", "app-3"}

// benchSlotDelay is how long a fake agent takes per slot: 20 ms, or
// HAROLL_BENCH_SLOT_DELAY (the children read it too).
var benchSlotDelay = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("HAROLL_BENCH_SLOT_DELAY")); err == nil && d > 0 {
		return d
	}
	return 20 * time.Millisecond
}()

// childPIDs are the agent processes, whose CPU time is reported apart.
var (
	childMu   sync.Mutex
	childPIDs []int
)

// childCPU is the CPU time the agent child processes used so far.
func childCPU() time.Duration {
	childMu.Lock()
	defer childMu.Unlock()
	var total time.Duration
	for _, pid := range childPIDs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which ends with ')'): utime and
		// stime are the 12th and 13th, in clock ticks (100 Hz on Linux).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond
	}
	return total
}

func TestMain(m *testing.M) {
	if n := os.Getenv(serveEnv); n != "" {
		os.Exit(serveAgents(n))
	}
	os.Exit(m.Run())
}

// serveAgents is the child: it serves n fake agents, prints their
// addresses, then "ready", and serves until its stdin closes.
func serveAgents(n string) int {
	count, err := strconv.Atoi(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	raiseFileLimit()
	opts, err := agentServerOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	for range count {
		addr, _, err := listen(&fakeServer{slots: benchSlots, delay: benchSlotDelay}, opts...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(w, addr)
	}
	fmt.Fprintln(w, "ready")
	w.Flush()
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard one: N agents
// need 2N sockets on loopback.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}

// childAgents starts ceil(n/benchAgentsPerChild) child processes serving n
// agents in all, and returns their addresses.
func childAgents(b *testing.B, n int) []string {
	b.Helper()
	var addrs []string
	for left := n; left > 0; left -= benchAgentsPerChild {
		k := min(left, benchAgentsPerChild)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), serveEnv+"="+strconv.Itoa(k))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		childMu.Lock()
		childPIDs = append(childPIDs, cmd.Process.Pid)
		childMu.Unlock()
		b.Cleanup(func() {
			childMu.Lock()
			childPIDs = nil
			childMu.Unlock()
			stdin.Close()
			_ = cmd.Wait()
		})
		sc := bufio.NewScanner(stdout)
		got := 0
		for sc.Scan() && sc.Text() != "ready" {
			addrs = append(addrs, sc.Text())
			got++
		}
		if got != k {
			b.Fatalf("child served %d agents, want %d", got, k)
		}
	}
	return addrs
}

// inProcessAgents serves n agents in this process.
func inProcessAgents(b *testing.B, n int) []string {
	b.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = serve(b, &fakeServer{slots: benchSlots, delay: benchSlotDelay})
	}
	return addrs
}

func BenchmarkRollout1000Agents(b *testing.B) {
	b.Run("agents=child-process", func(b *testing.B) { benchRollout(b, 1000, true) })
	b.Run("agents=in-process", func(b *testing.B) { benchRollout(b, 1000, false) })
}

// BenchmarkRolloutAgents runs with HAROLL_BENCH_AGENTS agents (a comma
// separated list of counts), in child processes.
func BenchmarkRolloutAgents(b *testing.B) {
	env := os.Getenv("HAROLL_BENCH_AGENTS")
	if env == "" {
		b.Skip("set HAROLL_BENCH_AGENTS=10000 (or 1000,10000)")
	}
	for _, s := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			b.Fatalf("HAROLL_BENCH_AGENTS: %q", s)
		}
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) { benchRollout(b, n, true) })
	}
}

func benchRollout(b *testing.B, n int, child bool) {
	if limit := raiseFileLimit(); !child && limit < uint64(3*n+256) {
		b.Skipf("RLIMIT_NOFILE %d is too low for %d agents in-process", limit, n)
	}
	var addrs []string
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	if child && os.Getenv("HAROLL_BENCH_TLS") != "" {
		dir := benchPKI(b)
		tc, err := tlsconf.Client(filepath.Join(dir, "coordinator.crt"), filepath.Join(dir, "coordinator.key"), filepath.Join(dir, certs.CACertFile))
		if err != nil {
			b.Fatal(err)
		}
		creds = grpc.WithTransportCredentials(credentials.NewTLS(tc))
		b.Setenv(tlsDirEnv, dir)
	}
	if child {
		addrs = childAgents(b, n)
	} else {
		addrs = inProcessAgents(b, n)
	}
	strategy := Strategy{Batch: Size{percent: 35}}
	plan, err := NewPlan(addrs, benchSlots, strategy)
	if err != nil {
		b.Fatal(err)
	}
	ideal := time.Duration(len(plan.Batches)*len(benchSlots)) * benchSlotDelay

	var (
		total, execTime, cpu, agentsCPU time.Duration
		mu                              sync.Mutex
		firstBatch, lastEnd             time.Time
	)
	peak := startMemSampler(b)
	b.ResetTimer()
	for range b.N {
		var events atomic.Int64
		progress := NewProgress(io.Discard, addrs, benchSlots)
		e := &Executor{
			Dial:           DialGRPC(creds),
			Image:          "app:v2",
			ConnectTimeout: 10 * time.Second,
			StepTimeout:    time.Minute,
			Events: func(ev Event) {
				events.Add(1)
				progress.Event(ev)
				mu.Lock()
				switch {
				case ev.Kind == EventBatchStart && ev.Batch == 1:
					firstBatch = ev.Time
				case ev.Kind == EventBatchEnd:
					lastEnd = ev.Time
				}
				mu.Unlock()
			},
		}
		cpu0, child0 := cpuTime(), childCPU()
		start := time.Now()
		res, err := e.Run(b.Context(), addrs, nil, strategy)
		total += time.Since(start)
		cpu += cpuTime() - cpu0
		agentsCPU += childCPU() - child0
		if err != nil {
			b.Fatal(err)
		}
		if res.Totals.Done != n {
			b.Fatalf("totals %+v", res.Totals)
		}
		mu.Lock()
		execTime += lastEnd.Sub(firstBatch)
		mu.Unlock()
	}
	b.StopTimer()
	runs := float64(b.N)
	heap, sys := peak()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / runs }
	b.ReportMetric(ms(total), "total_ms/op")
	b.ReportMetric(ms(execTime), "batches_ms/op")
	b.ReportMetric(float64(ideal.Milliseconds()), "ideal_ms")
	b.ReportMetric(100*(ms(total)/float64(ideal.Milliseconds())-1), "overhead_%")
	b.ReportMetric(100*(ms(execTime)/float64(ideal.Milliseconds())-1), "batches_overhead_%")
	b.ReportMetric(ms(cpu), "cpu_ms/op")
	if child {
		b.ReportMetric(ms(agentsCPU), "agents_cpu_ms/op")
	}
	b.ReportMetric(float64(heap)/(1<<20), "peak_heap_MB")
	b.ReportMetric(float64(sys)/(1<<20), "peak_sys_MB")
	b.ReportMetric(float64(maxRSS())/(1<<20), "maxrss_MB")
}

// cpuTime is this process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is this process's peak resident set, in bytes.
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

// startMemSampler samples the heap every 10 ms until the returned function
// is called, which gives the peaks of HeapInuse and Sys.
func startMemSampler(b *testing.B) func() (heap, sys uint64) {
	b.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var heap, sys uint64
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			heap, sys = max(heap, m.HeapInuse), max(sys, m.Sys)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() (uint64, uint64) {
		close(done)
		wg.Wait()
		return heap, sys
	}
}

// tlsDirEnv tells a child serving agents to serve them with mutual TLS,
// with the files in that directory.
const tlsDirEnv = "HAROLL_BENCH_TLS_DIR"

// benchPKI writes a CA, an agent certificate for 127.0.0.1 and a
// coordinator certificate, as `haroll certs` does, into a fresh directory.
func benchPKI(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	const validity = 24 * time.Hour
	if err := certs.NewCA(dir, "haroll-bench-ca", validity); err != nil {
		b.Fatal(err)
	}
	if err := certs.Issue(dir, dir, "agent", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, certs.Server, validity); err != nil {
		b.Fatal(err)
	}
	if err := certs.Issue(dir, dir, "coordinator", nil, nil, certs.Client, validity); err != nil {
		b.Fatal(err)
	}
	return dir
}

// agentServerOptions are the options a child serves its agents with: mutual
// TLS when tlsDirEnv is set.
func agentServerOptions() ([]grpc.ServerOption, error) {
	dir := os.Getenv(tlsDirEnv)
	if dir == "" {
		return nil, nil
	}
	tc, err := tlsconf.Server(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"), filepath.Join(dir, certs.CACertFile), nil)
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, nil
}
