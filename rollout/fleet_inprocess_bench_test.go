package rollout

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haroll/haroll/agent/agentpb"
)

// The network-free tier of the fleet benchmark: the executor, with a state
// file and the plain progress (to io.Discard), drives an in-memory fleet
// whose agents answer at once, so that only the coordinator's own work is
// timed. ns/host should stay flat from 10,000 to 100,000 hosts; a cost that
// grows faster than the fleet (a state file rewritten whole per finished
// pair) makes it rise with the fleet.
//
//	make bench-fleet-inprocess                       (10,000 and 100,000 hosts)
//	HAROLL_BENCH_FLEET_SIZES=10000,30000 go test -run '^$' -bench FleetInProcess -benchtime 1x ./rollout/
//
// HAROLL_BENCH_FLEET_DELAY (a duration, default 0) makes every slot take
// that long; HAROLL_BENCH_FLEET_TIMEOUT (default 10m) bounds one rollout, so
// that a superlinear cost fails the benchmark with the pairs it finished
// instead of running for hours.

// memSlots are every in-memory host's slots.
var memSlots = []string{"app-1", "app-2", "app-3"}

// memPhases are the phase events an in-memory agent sends per slot.
var memPhases = []string{"drain", "create", "boot", "gate", "restore"}

// memAgent is one host of the in-memory fleet: it answers Status at once and
// replaces a slot after delay, sending memPhases through onPhase first.
type memAgent struct {
	host  string
	delay time.Duration
}

func (a memAgent) Status(context.Context) (*agentpb.StatusResponse, error) {
	st := &agentpb.StatusResponse{AgentVersion: "bench", Hostname: a.host}
	for _, s := range memSlots {
		st.Slots = append(st.Slots, &agentpb.SlotStatus{Slot: s, Backend: "app", Server: s, Container: s,
			Image: "app:v1", Running: true, HaproxyStatus: "UP", Weight: 1})
	}
	return st, nil
}

func (a memAgent) Redeploy(ctx context.Context, req *agentpb.RedeployRequest, onPhase func(*agentpb.PhaseEvent)) (*agentpb.Report, error) {
	begin := time.Now()
	rep := &agentpb.Report{Image: req.GetImage()}
	for _, s := range req.GetSlots() {
		phases := make(map[string]*durationpb.Duration, len(memPhases))
		for _, p := range memPhases {
			d := durationpb.New(a.delay / time.Duration(len(memPhases)))
			phases[p] = d
			if onPhase != nil {
				onPhase(&agentpb.PhaseEvent{Slot: s, Phase: p, Start: timestamppb.New(begin), Duration: d})
			}
		}
		if a.delay > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(a.delay):
			}
		}
		rep.Slots = append(rep.Slots, &agentpb.SlotReport{Slot: s, Result: ResultReplaced, OldImage: "app:v1", Weight: 1,
			Phases: phases, Total: durationpb.New(time.Since(begin))})
	}
	rep.Total = durationpb.New(time.Since(begin))
	return rep, nil
}

func (memAgent) Promote(context.Context, string) error { return nil }

func (memAgent) Counters(context.Context, time.Duration, time.Duration, func(*agentpb.CountersSample)) error {
	return nil
}

func BenchmarkFleetInProcess(b *testing.B) {
	sizes := os.Getenv("HAROLL_BENCH_FLEET_SIZES")
	if sizes == "" {
		sizes = "10000,100000"
	}
	delay := benchEnvDuration(b, "HAROLL_BENCH_FLEET_DELAY", 0)
	timeout := benchEnvDuration(b, "HAROLL_BENCH_FLEET_TIMEOUT", 10*time.Minute)
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			b.Fatalf("HAROLL_BENCH_FLEET_SIZES: %q is not a count of hosts", s)
		}
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) { benchFleetInProcess(b, n, delay, timeout) })
	}
}

func benchFleetInProcess(b *testing.B, n int, delay, timeout time.Duration) {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("10.%d.%d.%d:7443", i>>16, (i>>8)&0xff, i&0xff)
	}
	dial := func(_ context.Context, h string) (Agent, error) { return memAgent{host: h, delay: delay}, nil }
	var elapsed time.Duration
	var stateBytes int64
	for range b.N {
		state := filepath.Join(b.TempDir(), "rollout.json")
		e := &Executor{Dial: dial, Image: "app:v2", Origin: "bench", ConnectTimeout: 10 * time.Second,
			StepTimeout: 10 * time.Minute, StateFile: state, Events: NewProgress(io.Discard, hosts, memSlots).Event}
		ctx, cancel := context.WithTimeout(b.Context(), timeout)
		start := time.Now()
		res, err := e.Run(ctx, hosts, nil, Strategy{Batch: Size{percent: 35}})
		elapsed += time.Since(start)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			pairs := 0
			if st, rerr := ReadState(state); rerr == nil {
				pairs = len(st.Done)
			}
			b.Fatalf("%d hosts: not finished after %s, %d of %d (host, slot) pairs recorded: the coordinator's cost grows faster than the fleet",
				n, timeout, pairs, n*len(memSlots))
		}
		if err != nil || res.Totals.Done != n {
			b.Fatalf("%d hosts: %d done, error %v", n, res.Totals.Done, err)
		}
		if fi, err := os.Stat(state); err == nil {
			stateBytes = fi.Size()
		}
	}
	per := float64(elapsed.Nanoseconds()) / float64(b.N)
	b.ReportMetric(per/float64(n), "ns/host")
	b.ReportMetric(per/1e6, "total_ms")
	b.ReportMetric(float64(stateBytes)/(1<<20), "state_MB")
}

// benchEnvDuration reads a duration from the environment variable name, or
// returns def when it is unset.
func benchEnvDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s=%q: want a duration such as 100ms", name, v)
	}
	return d
}
