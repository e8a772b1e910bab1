package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
	"github.com/haroll/haroll/internal/hook/hooktest"
)

// persistence is how a backend pins its clients to a server.
type persistence struct {
	name    string
	backend string             // backend lines
	server  func(i int) string // server line options
	// sourceIPs: each simulated client connects from its own loopback
	// address, for `stick on src`.
	sourceIPs bool
}

// strict makes a request HAProxy routes to a server with nothing behind it
// fail, as it does for the users who reported the loss: no retry on another
// server hides it.
const strict = "retries 0\nno option redispatch"

var (
	cookiePersistence = persistence{
		name:    "cookie",
		backend: "cookie SRV insert indirect nocache\n" + strict,
		server:  func(i int) string { return fmt.Sprintf("cookie s%d", i+1) },
	}
	stickSrcPersistence = persistence{
		name:      "stick-on-src",
		backend:   "stick-table type ip size 1m expire 10m\nstick on src\n" + strict,
		sourceIPs: true,
	}
)

// pinnedClients is the number of simulated clients: enough that every
// server has several pinned to it.
const pinnedClients = 48

// longRequest is the slow requests' length; a slot's drain must end within
// twice that.
const longRequest = 3 * time.Second

func startPersistentHost(t *testing.T, addressing harness.Addressing, p persistence, strategy string) *harness.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := harness.StartHost(ctx, harness.HostOptions{
		Dir: t.TempDir(), Name: fmt.Sprintf("hpt%d", time.Now().UnixNano()%1e9), Image: images.V1,
		Weights: weights, Addressing: addressing, HealthTimeout: 10 * time.Second,
		Strategy: strategy, Backend: p.backend, ServerOptions: p.server,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// pinnedLoad sends 300 POST/s from pinnedClients clients that keep what pins
// them (their cookie, their source address), plus a 3-second request every
// 500 ms, during fn, and returns what the load saw.
func pinnedLoad(t *testing.T, h *harness.Host, p persistence, fn func()) loadgen.Result {
	t.Helper()
	stop := loadgen.Start(context.Background(), loadgen.Options{
		URL: h.URL("/"), Rate: 300, SlowURL: h.URL(fmt.Sprintf("/slow?ms=%d", longRequest.Milliseconds())),
		SlowEvery: 500 * time.Millisecond, Clients: pinnedClients, SourceIPs: p.sourceIPs,
	})
	time.Sleep(time.Second) // every client pinned before the redeploy
	fn()
	time.Sleep(1500 * time.Millisecond)
	res := stop()
	t.Logf("load: %s", res)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, f := range res.Failures {
		t.Logf("failure: client %d at %s: %s %q (server %q)", f.Client, f.Start.Format("15:04:05.000"), f.Desc, f.Body, f.Server)
	}
	return res
}

// timedRun is a haroll run whose output was read line by line as it came.
type timedRun struct {
	out    string
	err    error
	report agent.Report
	// gateEnd is when each slot's gate phase ended, from the agent's JSON
	// log ("phase done", phase gate): the traffic comes back after it.
	gateEnd map[string]time.Time
}

// runTimed runs haroll with --log-format json and calls onLog, if set, with
// each JSON log record as it is written (a map of its fields).
func runTimed(t *testing.T, onLog func(rec map[string]any), args ...string) timedRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--log-format", "json", "--log-level", "info")
	cmd := exec.CommandContext(ctx, harollBin, args...)
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	run := timedRun{gateEnd: map[string]time.Time{}}
	var b strings.Builder
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		b.WriteString(line + "\n")
		if !strings.HasPrefix(line, `{"time"`) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec["msg"] == "phase done" && rec["phase"] == string(agent.PhaseGate) {
			if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"])); err == nil {
				run.gateEnd[fmt.Sprint(rec["slot"])] = at
			}
		}
		if onLog != nil {
			onLog(rec)
		}
	}
	pr.Close()
	run.err = cmd.Wait()
	run.out = b.String()
	t.Logf("haroll %s:\n%s", strings.Join(args, " "), run.out)
	if i := strings.Index(run.out, "{\n"); i >= 0 {
		if err := json.NewDecoder(strings.NewReader(run.out[i:])).Decode(&run.report); err != nil {
			t.Errorf("the JSON report does not decode: %v", err)
		}
	}
	return run
}

// served is what a test app container says it received (GET /_served).
type served struct {
	Requests int64 `json:"requests"`
	First    int64 `json:"first_unix_nano"`
}

func askServed(t *testing.T, addr string) served {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/_served")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s served
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// assertNothingBeforeTheGate checks, on each slot's (new) container, that its
// first client request came after its gate passed.
func assertNothingBeforeTheGate(t *testing.T, h *harness.Host, run timedRun) {
	t.Helper()
	addrs, err := h.Addrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, addr := range addrs {
		slot := fmt.Sprintf("app-%d", i+1)
		gate, ok := run.gateEnd[slot]
		if !ok {
			t.Errorf("%s: no gate in the log", slot)
			continue
		}
		s := askServed(t, addr)
		if s.First == 0 {
			t.Logf("%s: the new container got no client request (its clients stay pinned elsewhere)", slot)
			continue
		}
		first := time.Unix(0, s.First)
		t.Logf("%s: the new container's first client request came %s after its gate (%d requests)", slot, first.Sub(gate).Round(time.Millisecond), s.Requests)
		if first.Before(gate) {
			t.Errorf("%s: the new container got a client request at %s, %s before its gate passed", slot, first.Format("15:04:05.000"), gate.Sub(first))
		}
	}
}

// assertPinnedEverywhere checks that the load's clients were pinned to every
// old container before the redeploy: each one answered at least two clients
// (X-Server is the container's hostname, its short ID). After a redeploy the
// moved clients stay where they were moved, as pinned clients do.
func assertPinnedEverywhere(t *testing.T, old []harness.Container, res loadgen.Result) {
	t.Helper()
	for _, c := range old {
		clients := 0
		for _, cl := range res.Clients {
			if cl.Servers[c.ID[:12]] > 0 {
				clients++
			}
		}
		t.Logf("old container %s served %d clients", c.ID[:12], clients)
		if clients < 2 {
			t.Errorf("old container %s served %d clients, want at least 2 pinned to it", c.ID[:12], clients)
		}
	}
	t.Logf("%d switches of server among %d clients", res.Switches, len(res.Clients))
}

// assertDrainsBounded checks that every replaced slot's drain ended within
// twice the longest request.
func assertDrainsBounded(t *testing.T, rep agent.Report) {
	t.Helper()
	if len(rep.Slots) != len(weights) {
		t.Fatalf("report has %d slots, want %d", len(rep.Slots), len(weights))
	}
	for _, s := range rep.Slots {
		d := s.Phases[agent.PhaseDrain]
		t.Logf("%s: %s, drain %s", s.Slot, s.Result, d.Round(time.Millisecond))
		if d <= 0 || d > 2*longRequest {
			t.Errorf("%s: drain took %s, want under %s (twice the longest request)", s.Slot, d, 2*longRequest)
		}
	}
}

func TestPersistentClientsLoseNothing(t *testing.T) {
	requireDeps(t)
	for _, p := range []persistence{cookiePersistence, stickSrcPersistence} {
		for _, layout := range []struct {
			strategy   string
			addressing harness.Addressing
		}{
			{agent.StrategyStopFirst, harness.FixedPorts},
			{agent.StrategyStartFirst, harness.EphemeralPorts},
		} {
			t.Run(p.name+"/"+layout.strategy, func(t *testing.T) {
				t.Parallel() // a host of its own: beside another case (main_test.go)
				h := startPersistentHost(t, layout.addressing, p, layout.strategy)
				old := takeSnapshot(t, h).containers
				var run timedRun
				res := pinnedLoad(t, h, p, func() {
					run = runTimed(t, nil, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--output", "json")
					if run.err != nil {
						t.Errorf("redeploy failed: %v", run.err)
					}
				})
				assertNoLoss(t, res)
				if !slices.Equal(res.LastVersions, []string{"v2"}) {
					t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
				}
				assertServing(t, h, images.V2)
				assertPinnedEverywhere(t, old, res)
				assertDrainsBounded(t, run.report)
				assertNothingBeforeTheGate(t, h, run)
			})
		}
	}
}

func TestABrokenImageOnAPersistentBackendIsRolledBackWithoutLoss(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startPersistentHost(t, harness.FixedPorts, cookiePersistence, "")
	before := takeSnapshot(t, h)
	res := pinnedLoad(t, h, cookiePersistence, func() {
		run := runTimed(t, nil, "redeploy", "--config", h.AgentYAML, "--image", images.Broken)
		if run.err == nil {
			t.Error("redeploy of a broken image succeeded")
		}
		if !strings.Contains(run.out, "rolled_back") {
			t.Error("the summary does not say the slot was rolled back")
		}
	})
	assertBackOnV1(t, h, before, res)
}

// reloadCost measures what a plain HAProxy reload under the same pinned load
// costs, without haroll: the requests it fails itself (an EOF on a
// keep-alive connection the old worker closes).
func reloadCost(t *testing.T, h *harness.Host, p persistence) int64 {
	t.Helper()
	res := pinnedLoad(t, h, p, func() {
		if err := h.HAProxy.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("a plain reload under this load failed %d requests (%v)", res.Lost(), res.Errors)
	return res.Lost()
}

// reloadWindow is when one reload ran: from the signal until the new
// worker served, plus reloadLinger, in which the old worker closes the
// keep-alive connections it had.
type reloadWindow struct{ from, to time.Time }

// reloadLinger is how long after a reload's new worker serves a request may
// still fail on a keep-alive connection the old worker closes.
const reloadLinger = 250 * time.Millisecond

// assertOnlyReloadsFailed checks that a run with reloads lost nothing but
// what a reload fails itself: a transport error (EOF, reset: no HTTP status)
// on a request that failed while a reload ran. How many such a reload fails
// depends on how many keep-alive connections its old worker closes under
// a client's request; a plain reload under the same load (perReload) is
// logged for comparison. Any HTTP error, or a transport error outside every
// reload, fails the test.
func assertOnlyReloadsFailed(t *testing.T, res loadgen.Result, reloads []reloadWindow, perReload int64) {
	t.Helper()
	own := func(f loadgen.Failure) bool {
		if f.Status != 0 {
			return false
		}
		end := f.Start.Add(f.Elapsed)
		for _, w := range reloads {
			if !end.Before(w.from) && !end.After(w.to.Add(reloadLinger)) {
				return true
			}
		}
		return false
	}
	var others []loadgen.Failure
	for _, f := range res.Failures {
		if !own(f) {
			others = append(others, f)
		}
	}
	if res.Lost() > int64(len(res.Failures)) || len(others) > 0 {
		t.Errorf("lost %d requests, %d of them not a reload's own (a transport error while a reload ran; a plain reload under this load lost %d): %v; %+v",
			res.Lost(), len(others), perReload, res.Errors, others)
	} else if res.Lost() > 0 {
		t.Logf("lost %d requests, all transport errors while one of the %d reloads ran (a plain reload: %d)", res.Lost(), len(reloads), perReload)
	}
	if res.SlowOK == 0 {
		t.Error("no slow request completed: the drain was not exercised")
	}
}

// reloader reloads HAProxy in the background, after the delay at gives, at
// each JSON log record of haroll's for which at gives a reason, and keeps
// when each reload ran and why (read them once wg is waited for).
type reloader struct {
	t  *testing.T
	h  *harness.Host
	at func(rec map[string]any) (why string, delay time.Duration)

	wg      sync.WaitGroup
	mu      sync.Mutex
	windows []reloadWindow
	whys    []string
}

func (r *reloader) onLog(rec map[string]any) {
	why, delay := r.at(rec)
	if why == "" {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		time.Sleep(delay)
		from := time.Now()
		if err := r.h.HAProxy.Reload(context.Background()); err != nil {
			r.t.Errorf("reload %s: %v", why, err)
			return
		}
		r.mu.Lock()
		r.windows, r.whys = append(r.windows, reloadWindow{from, time.Now()}), append(r.whys, why)
		r.mu.Unlock()
		r.t.Logf("reloaded HAProxy %s", why)
	}()
}

// redeployReloading measures a plain reload under pinned load, then redeploys
// v2 under the same load and reloads HAProxy (in the background, after the
// delay given) at each JSON log record of haroll's for which reloadAt gives
// a reason. It checks what must hold after any reload: nothing lost beyond
// the reloads' own, every server on v2 at its weight, and no client request
// on a new container before its gate; it returns the run.
func redeployReloading(t *testing.T, h *harness.Host, p persistence, want int,
	reloadAt func(rec map[string]any) (why string, delay time.Duration)) timedRun {
	t.Helper()
	perReload := reloadCost(t, h, p)
	var run timedRun
	rl := &reloader{t: t, h: h, at: reloadAt}
	res := pinnedLoad(t, h, p, func() {
		run = runTimed(t, rl.onLog, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--output", "json")
		if run.err != nil {
			t.Errorf("redeploy failed: %v", run.err)
		}
		rl.wg.Wait()
	})
	reloads := rl.windows
	if len(reloads) != want {
		t.Fatalf("reloaded %d times, want %d", len(reloads), want)
	}
	assertOnlyReloadsFailed(t, res, reloads, perReload)
	assertServing(t, h, images.V2)
	assertNothingBeforeTheGate(t, h, run)
	if !strings.Contains(run.out, "haproxy was reloaded or restarted") {
		t.Error("haroll did not log the reloads")
	}
	return run
}

// phaseDone returns the slot and phase of a "phase done" log record.
func phaseDone(rec map[string]any) (slot, phase string) {
	if rec["msg"] != "phase done" {
		return "", ""
	}
	return fmt.Sprint(rec["slot"]), fmt.Sprint(rec["phase"])
}

// TestAReloadDuringStopAndBootExposesNoUnprovenContainer reloads HAProxy
// (without a server-state-file: every runtime change is lost) as slot 1's
// old container stops and as slot 2's new one starts and boots, stop-first on
// fixed ports, where HAProxy's configured address is the new container's.
func TestAReloadDuringStopAndBootExposesNoUnprovenContainer(t *testing.T) {
	requireDeps(t)
	h := startPersistentHost(t, harness.FixedPorts, cookiePersistence, agent.StrategyStopFirst)
	redeployReloading(t, h, cookiePersistence, 2, func(rec map[string]any) (string, time.Duration) {
		switch slot, phase := phaseDone(rec); {
		case slot == "app-1" && phase == string(agent.PhaseDrain):
			return "as app-1's old container stops", 0
		case slot == "app-2" && phase == string(agent.PhaseStop):
			return "as app-2's new container starts", 0
		}
		return "", 0
	})
}

// TestAReloadDuringPostReplaceExposesNoUnprovenContainer reloads HAProxy
// while a start-first slot's post_replace hook runs: the new worker points
// the server at its configured address (the old container) at its
// configured weight; haroll puts it back in maintenance at the new address,
// and the new container gets no client request before its gate.
func TestAReloadDuringPostReplaceExposesNoUnprovenContainer(t *testing.T) {
	requireDeps(t)
	h := startPersistentHost(t, harness.EphemeralPorts, cookiePersistence, agent.StrategyStartFirst)
	script := hooktest.Script(t, "sleep 2\n")
	if err := h.AppendAgentConfig("hooks:\n  post_replace: {command: [" + script + "], timeout: 10s}\n"); err != nil {
		t.Fatal(err)
	}
	redeployReloading(t, h, cookiePersistence, 1, func(rec map[string]any) (string, time.Duration) {
		// The hook starts right after the address switch; 500 ms into its 2 s.
		if slot, phase := phaseDone(rec); slot == "app-1" && phase == string(agent.PhaseAddress) {
			return "during app-1's post_replace hook", 500 * time.Millisecond
		}
		return "", 0
	})
}

func TestABackendWithOptionPersistIsRefusedAndNothingChanges(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a host of its own: beside another test (main_test.go)
	h := startPersistentHost(t, harness.FixedPorts, persistence{
		name: "option-persist", backend: "cookie SRV insert indirect nocache\noption persist",
		server: cookiePersistence.server,
	}, "")
	before := takeSnapshot(t, h)
	out, err := haroll(t, "redeploy", "--config", h.AgentYAML, "--image", images.V2)
	if err == nil {
		t.Fatal("exit 0 for a backend with option persist")
	}
	if !containsAll(out, "option persist", "remove `option persist`") {
		t.Error("the message does not name option persist and what to do")
	}
	if after := takeSnapshot(t, h); !slices.Equal(after.servers, before.servers) || !slices.Equal(after.containers, before.containers) {
		t.Errorf("the refusal changed the host:\nbefore %v\nafter  %v", before, after)
	}
}
