// Command bench compares ways of replacing three app containers behind
// HAProxy, in one run, on the same setup and under the same load: the 2016
// method (weight 0 with socat, sleep 5, docker stop/rm/run, weight 1), a
// naive docker stop/rm/run with no HAProxy change, and haroll redeploy with
// each strategy, blue/green pair slots included. It prints one table of
// wall time, failed requests, the backend's lowest capacity (sampled by the
// bench from `show stat` every 50 ms) and weights after; the same for fixed
// host ports only, blue/green against the 2016 method; then haroll's time
// per slot beside the slot's physical limit (drain + the app's
// boot-to-ready + one HAProxy rise; a blue/green slot's limit has no
// drain: its old side drains after the new one serves).
//
//	go run ./integration/bench              (or: make bench)
//	go run ./integration/bench -bluegreen   (or: make bench-bluegreen) the fixed-port comparison only
//	go run ./integration/bench -baseline HEAD~3   also runs haroll built at that revision
//
// Both end with one line:
//
//	bluegreen ratio_vs_2016=<wall blue/green max_surge 1 / wall 2016> failed=<failed requests of the blue/green runs> capacity_min_pct=<lowest capacity of the blue/green runs, % of the start>
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the knobs every method runs under.
type options struct {
	rate     int
	inter    time.Duration
	rise     int
	weights  []int
	images   harness.Versions
	dir      string
	scripts  string // folder of replace-2016.sh and replace-naive.sh
	bootTime time.Duration
	haproxy  string // "HAProxy 2.6.12", as `haproxy -v` says
}

// name2016 is the method the others' wall times are compared with.
const name2016 = "2016: weight 0, sleep 5, docker stop/rm/run, weight 1"

// method is one way of moving the three slots from v1 to v2.
type method struct {
	name       string
	addressing harness.Addressing
	strategy   string
	// fixed is the method's row in the fixed-host-port comparison ("": not
	// in it); it says so when the method's layout differs.
	fixed string
	// pairs makes every slot a blue/green pair (fixed host ports, an alt
	// server per slot), with maxSurge as the agent's max_surge.
	pairs    bool
	maxSurge int
	// deploy replaces the three slots of h and, for haroll, returns its
	// report; haroll's progress lines go to progress.
	deploy func(ctx context.Context, h *harness.Host, progress io.Writer) (*agent.Report, error)
}

// outcome is what one method did.
type outcome struct {
	method   method
	wall     time.Duration
	load     loadgen.Result
	capacity harness.Capacity
	begin    time.Time // the deploy's
	weights  string
	report   *agent.Report
	timeline *timeline
	err      error
}

// failed counts every request of the run that did not come back 200.
func (oc outcome) failed() int64 { return oc.load.Failed + oc.load.SlowFailed + oc.load.Dropped }

func run() error {
	rate := flag.Int("rate", 250, "requests per second through HAProxy")
	baseline := flag.String("baseline", "", "also run haroll built at this git revision (old and new in one run)")
	only := flag.String("only", "", "run only the methods whose name contains this")
	bluegreen := flag.Bool("bluegreen", false, "run only the fixed-host-port comparison (the 2016 method, haroll stop-first, start-first and blue/green)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	dir, err := os.MkdirTemp("", "haroll-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	step := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...) }

	_, self, _, _ := runtime.Caller(0)
	o := options{rate: *rate, inter: harness.DefaultInter, rise: harness.DefaultRise, weights: []int{7, 3, 5},
		dir: dir, scripts: filepath.Dir(self)}
	if o.haproxy, err = haproxyVersion(ctx); err != nil {
		return err
	}
	step("building haroll and the test app images (FROM scratch): boot 1 s, warm-up 0.5 s, latency 0-30 ms")
	bin, err := harness.BuildHaroll(ctx, dir)
	if err != nil {
		return err
	}
	o.images, err = harness.BuildVersions(ctx, "haroll-bench-app", harness.AppProfile{BootDelay: time.Second, Warmup: 500 * time.Millisecond, LatencyMax: 30 * time.Millisecond})
	if err != nil {
		return err
	}
	step("measuring the app's boot-to-ready time (docker start to the first 200 from /health), 3 times")
	if o.bootTime, err = bootToReady(ctx, o.images.V2, 3); err != nil {
		return err
	}
	step("boot-to-ready: %s (median)", o.bootTime.Round(time.Millisecond))

	watch := "HAROLL_HEALTH_DOCKER=" + agent.DockerHealthWatch
	methods := []method{
		{name: name2016, addressing: harness.FixedPorts, deploy: o.script2016, fixed: name2016},
		{name: "docker stop/rm/run, no HAProxy change", addressing: harness.FixedPorts, deploy: o.scriptNaive},
		{name: "haroll, fixed ports (auto: stop-first)", addressing: harness.FixedPorts, deploy: o.haroll(bin),
			fixed: "haroll stop-first (auto)"},
		{name: "haroll, fixed ports (auto: stop-first), health.docker watch", addressing: harness.FixedPorts, deploy: o.haroll(bin, watch)},
		{name: "haroll, ephemeral ports, stop-first", addressing: harness.EphemeralPorts, strategy: agent.StrategyStopFirst, deploy: o.haroll(bin)},
		{name: "haroll, ephemeral ports (auto: start-first)", addressing: harness.EphemeralPorts, deploy: o.haroll(bin),
			fixed: "haroll start-first (auto) -- EPHEMERAL ports, a different layout"},
		{name: "haroll, ephemeral ports (auto: start-first), health.docker watch", addressing: harness.EphemeralPorts, deploy: o.haroll(bin, watch)},
		{name: "haroll blue/green, fixed ports, max_surge 1", addressing: harness.FixedPorts, pairs: true, maxSurge: 1, deploy: o.haroll(bin),
			fixed: "haroll blue/green, max_surge 1 (pair slots)"},
		{name: "haroll blue/green, fixed ports, max_surge 3", addressing: harness.FixedPorts, pairs: true, maxSurge: 3, deploy: o.haroll(bin),
			fixed: "haroll blue/green, max_surge 3 (pair slots)"},
		{name: "haroll blue/green, fixed ports, max_surge 1, health.docker watch", addressing: harness.FixedPorts, pairs: true, maxSurge: 1, deploy: o.haroll(bin, watch)},
	}
	if *baseline != "" {
		old, err := buildAt(ctx, *baseline, dir)
		if err != nil {
			return err
		}
		methods = append(methods,
			method{name: "haroll @" + *baseline + ", fixed ports", addressing: harness.FixedPorts, deploy: o.haroll(old)},
			method{name: "haroll @" + *baseline + ", ephemeral ports", addressing: harness.EphemeralPorts, deploy: o.haroll(old)})
	}
	var outcomes []outcome
	for _, m := range methods {
		if !strings.Contains(m.name, *only) || *bluegreen && m.fixed == "" {
			continue
		}
		step("%s", m.name)
		oc, err := o.measure(ctx, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		outcomes = append(outcomes, oc)
	}
	if !*bluegreen {
		printComparison(outcomes, o)
	}
	printFixed(outcomes, o)
	printSlots(outcomes, o)
	printTimelines(outcomes)
	if line, ok := summary(outcomes); ok {
		fmt.Println()
		fmt.Println(line)
	}
	var errs []error
	for _, oc := range outcomes {
		if oc.method.pairs && oc.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", oc.method.name, oc.err))
		}
	}
	return errors.Join(errs...) // a blue/green deploy that failed makes the run fail, after the tables
}

// measure starts a fresh host, puts it under load, and runs m's deploy
// while sampling the backend's capacity.
func (o options) measure(ctx context.Context, m method) (outcome, error) {
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	h, err := o.startHost(hctx, m)
	if err != nil {
		return outcome{}, err
	}
	defer h.Close()
	stopLoad := loadgen.Start(ctx, loadgen.Options{URL: h.URL("/"), Rate: o.rate,
		SlowURL: h.URL("/slow?ms=3000"), SlowEvery: 500 * time.Millisecond})
	time.Sleep(time.Second)
	sampler, err := o.sampleCapacity(ctx, h)
	if err != nil {
		stopLoad()
		return outcome{}, err
	}
	begin := time.Now()
	tl := newTimeline(begin)
	rep, deployErr := m.deploy(ctx, h, tl)
	oc := outcome{method: m, wall: time.Since(begin), report: rep, timeline: tl, err: deployErr, begin: begin}
	oc.capacity = sampler.Stop()
	time.Sleep(3500 * time.Millisecond) // the last 3 s requests sent during the deploy end
	oc.load = stopLoad()
	if oc.load.Err != nil {
		return oc, oc.load.Err
	}
	oc.weights, err = weightsAfter(ctx, h)
	return oc, err
}

// sampleCapacity starts sampling the backend's capacity every
// capacityEvery and returns once the first sample, the start, is in.
func (o options) sampleCapacity(ctx context.Context, h *harness.Host) (*harness.CapacitySampler, error) {
	s := h.StartCapacitySampler(ctx, harness.DefaultBackend, capacityEvery)
	deadline := time.Now().Add(5 * time.Second)
	for s.Now().Samples == 0 {
		if time.Now().After(deadline) {
			c := s.Stop()
			return nil, fmt.Errorf("capacity: no read of show stat succeeded in 5 s (%d failed, last: %v)", c.Errors, c.LastErr)
		}
		time.Sleep(time.Millisecond)
	}
	return s, nil
}

// weightsAfter is the servers' weights, "7/3/5"; on a host of pairs, the
// weight of each slot's live side, and which side that is.
func weightsAfter(ctx context.Context, h *harness.Host) (string, error) {
	var w, live []string
	if !h.Opts.Pairs {
		stats, err := h.Servers(ctx)
		if err != nil {
			return "", err
		}
		for _, s := range stats {
			w = append(w, fmt.Sprint(s.Weight))
		}
		return strings.Join(w, "/"), nil
	}
	pairs, err := h.Pairs(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range pairs {
		s, err := p.Live()
		if err != nil {
			return "", err
		}
		w, live = append(w, fmt.Sprint(s.Weight)), append(live, s.Server)
	}
	return strings.Join(w, "/") + " (" + strings.Join(live, ",") + " live)", nil
}

// startHost starts the host m runs on: three containers on v1 behind an
// HAProxy, and an agent config for them.
func (o options) startHost(ctx context.Context, m method) (*harness.Host, error) {
	opts := harness.HostOptions{Dir: filepath.Join(o.dir, fmt.Sprintf("h%d", time.Now().UnixNano())),
		Name: fmt.Sprintf("hbench%d", time.Now().UnixNano()%1e9), Image: o.images.V1, Weights: o.weights,
		Addressing: m.addressing, Inter: o.inter, Rise: o.rise, Strategy: m.strategy}
	if m.pairs {
		opts.Pairs, opts.MaxSurge = true, m.maxSurge
	}
	return harness.StartHost(ctx, opts)
}

// script2016 runs replace-2016.sh for each slot in turn.
func (o options) script2016(ctx context.Context, h *harness.Host, _ io.Writer) (*agent.Report, error) {
	for i, name := range h.Names {
		args := append([]string{h.HAProxy.Socket, fmt.Sprintf("%s/s%d", harness.DefaultBackend, i+1), name, o.images.V2}, h.RunArgs[name]...)
		if err := runScript(ctx, filepath.Join(o.scripts, "replace-2016.sh"), args...); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// scriptNaive runs replace-naive.sh for each slot in turn.
func (o options) scriptNaive(ctx context.Context, h *harness.Host, _ io.Writer) (*agent.Report, error) {
	for _, name := range h.Names {
		if err := runScript(ctx, filepath.Join(o.scripts, "replace-naive.sh"), append([]string{name, o.images.V2}, h.RunArgs[name]...)...); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func runScript(ctx context.Context, script string, args ...string) error {
	out, err := exec.CommandContext(ctx, script, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(script), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// haroll returns a deploy that runs `haroll redeploy` with the binary bin,
// with env added to its environment; its progress (stderr) goes to progress.
func (o options) haroll(bin string, env ...string) func(ctx context.Context, h *harness.Host, progress io.Writer) (*agent.Report, error) {
	return func(ctx context.Context, h *harness.Host, progress io.Writer) (*agent.Report, error) {
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, "redeploy", "--config", h.AgentYAML, "--image", o.images.V2, "--output", "json")
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errOut, progress)
		runErr := cmd.Run()
		var rep agent.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return nil, fmt.Errorf("haroll's report: %w (%v: %s)", err, runErr, errOut.String())
		}
		if runErr != nil {
			return &rep, fmt.Errorf("haroll redeploy: %w: %s", runErr, errOut.String())
		}
		return &rep, nil
	}
}

// buildAt builds cmd/haroll at a git revision, in a temporary worktree.
func buildAt(ctx context.Context, rev, dir string) (string, error) {
	tree := filepath.Join(dir, "baseline")
	git := func(args ...string) error {
		if out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := git("worktree", "add", "--detach", tree, rev); err != nil {
		return "", err
	}
	defer git("worktree", "remove", "--force", tree)
	bin := filepath.Join(dir, "haroll-baseline")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/haroll")
	cmd.Dir = tree
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build haroll at %s: %w: %s", rev, err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// haproxyVersion is "HAProxy 2.6.12" for the haproxy the harness runs.
func haproxyVersion(ctx context.Context) (string, error) {
	bin, err := harness.FindHAProxy()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, bin, "-v").Output()
	if err != nil {
		return "", fmt.Errorf("%s -v: %w", bin, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return "", fmt.Errorf("%s -v: %q", bin, out)
	}
	version, _, _ := strings.Cut(f[2], "-")
	return f[0] + " " + version, nil
}

// bootToReady starts a container of image n times and returns the median
// time from `docker start` to the first 200 from its /health.
func bootToReady(ctx context.Context, image string, n int) (time.Duration, error) {
	var times []time.Duration
	for range n {
		id, err := dockerCmd(ctx, "create", "--label", harness.TestLabel+"=1", "-p", "127.0.0.1::8080", image)
		if err != nil {
			return 0, err
		}
		d, err := timeToReady(ctx, id)
		_, _ = dockerCmd(context.WithoutCancel(ctx), "rm", "-f", id)
		if err != nil {
			return 0, err
		}
		times = append(times, d)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

func timeToReady(ctx context.Context, id string) (time.Duration, error) {
	begin := time.Now()
	if _, err := dockerCmd(ctx, "start", id); err != nil {
		return 0, err
	}
	port, err := dockerCmd(ctx, "port", id, "8080/tcp")
	if err != nil {
		return 0, err
	}
	url := "http://" + strings.Fields(port)[0] + "/health"
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for time.Since(begin) < 30*time.Second {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(begin), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, errors.New("the app never became ready")
}

func dockerCmd(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}
