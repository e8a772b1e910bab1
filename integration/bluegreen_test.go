package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
)

// Blue/green slots (alt server): every slot of these hosts is a pair, s<i>
// live and s<i>b idle (declared disabled) at the start, on a backend that
// pins its clients with a cookie and neither retries nor redispatches
// (cookiePersistence), so a request HAProxy sends where nothing serves it
// fails. A capacity sampler reads `show stat` every 50 ms: the sum of the
// weights of the servers taking new traffic must never fall below its value
// before the redeploy.

func altCookie(i int) string { return fmt.Sprintf("cookie s%db", i+1) }

// startPairHost starts a host whose slots are blue/green pairs (weights
// 7, 3, 5; checks every 100 ms, rise 2) behind the cookie backend.
func startPairHost(t *testing.T, addressing harness.Addressing, more func(*harness.HostOptions)) *harness.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := pairHostOptions(addressing)
	o.Dir, o.Name = t.TempDir(), fmt.Sprintf("hbg%d", time.Now().UnixNano()%1e9)
	if more != nil {
		more(&o)
	}
	h, err := harness.StartHost(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	assertPrimaryLive(t, h)
	return h
}

// pairHostOptions are the options of a host of blue/green pairs, but its
// Dir and Name.
func pairHostOptions(addressing harness.Addressing) harness.HostOptions {
	return harness.HostOptions{
		Image: images.V1, Weights: weights, Addressing: addressing, Inter: 100 * time.Millisecond, Rise: 2,
		HealthTimeout: 10 * time.Second, Backend: cookiePersistence.backend,
		ServerOptions: cookiePersistence.server, AltServerOptions: altCookie,
		Pairs: true, DrainGrace: 500 * time.Millisecond,
	}
}

// assertPrimaryLive checks that every pair of h has its primary server live
// and its alt one in MAINT, as a host starts.
func assertPrimaryLive(t *testing.T, h *harness.Host) {
	t.Helper()
	pairs, err := h.Pairs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if !p.Alt.InMaint() || p.Primary.InMaint() {
			t.Fatalf("%s at the start: %s %s, %s %s; want the primary live, the alt in MAINT", p.Slot, p.Primary.Server, p.Primary.Status, p.Alt.Server, p.Alt.Status)
		}
	}
}

// wallTime logs how long the test took (CI's budget is tight).
func wallTime(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() { t.Logf("wall time %s", time.Since(start).Round(100*time.Millisecond)) })
}

// side names the servers of each slot on one side: primary (s<i>) or alt.
func side(h *harness.Host, alt bool) []string {
	var out []string
	for i := range h.Names {
		if alt {
			out = append(out, h.Alts[i])
		} else {
			out = append(out, fmt.Sprintf("s%d", i+1))
		}
	}
	return out
}

// assertPairs checks every slot of h after a redeploy ended: exactly one side
// live, the one in live, fully UP at the slot's weight and at its
// container's address; the other side in MAINT with the slot's weight as
// `get weight` says (`show stat` shows a server in MAINT at its effective
// weight, 0 once it was set while in MAINT or never served); one
// container per slot, running image ("": any), no other container; no pending
// replacement in the journal.
func assertPairs(t *testing.T, h *harness.Host, live []string, image string) {
	t.Helper()
	ctx := context.Background()
	pairs, err := h.Pairs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.Addrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pairs {
		l, err := p.Live()
		if err != nil {
			t.Error(err)
			continue
		}
		idle := p.Idle(l.Server)
		if l.Server != live[i] {
			t.Errorf("%s: %s is live (%s w=%d), want %s", p.Slot, l.Server, l.Status, l.Weight, live[i])
		}
		if !l.FullyUp() || l.Weight != weights[i] {
			t.Errorf("%s: live %s is %s at weight %d (check %s), want fully UP at %d", p.Slot, l.Server, l.Status, l.Weight, l.CheckStatus, weights[i])
		}
		if l.Addr != addrs[i] {
			t.Errorf("%s: live %s points at %s, its container %s is at %s", p.Slot, l.Server, l.Addr, h.Names[i], addrs[i])
		}
		if w := userWeight(t, h, idle.Server); !idle.InMaint() || w != weights[i] {
			t.Errorf("%s: idle %s is %s at weight %d (get weight), want MAINT at %d", p.Slot, idle.Server, idle.Status, w, weights[i])
		}
	}
	all, err := h.AllContainers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	if !slices.Equal(all, h.Names) {
		t.Errorf("containers on the host: %v, want exactly %v", all, h.Names)
	}
	ctrs, err := h.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range ctrs {
		if image != "" && c.Image != image {
			t.Errorf("%s runs %s, want %s", h.Names[i], c.Image, image)
		}
		if running := inspect(t, h.Names[i], "{{.State.Running}}"); running != "true" {
			t.Errorf("%s is not running", h.Names[i])
		}
	}
	for _, s := range pairStatus(t, h) {
		if s.Pending != nil {
			t.Errorf("%s: the journal still holds a replacement: %+v", s.Slot, *s.Pending)
		}
	}
}

// userWeight is a server's weight as `get weight` says: the one it has
// when out of maintenance.
func userWeight(t *testing.T, h *harness.Host, server string) int {
	t.Helper()
	out, err := h.HAProxy.Exec("get weight " + harness.DefaultBackend + "/" + server)
	if err != nil {
		t.Fatal(err)
	}
	var w int
	if _, err := fmt.Sscan(out, &w); err != nil {
		t.Fatalf("get weight %s: %q", server, out)
	}
	return w
}

// pairStatus is `haroll status -o json`.
func pairStatus(t *testing.T, h *harness.Host) []agent.SlotStatus {
	t.Helper()
	out, err := exec.Command(harollBin, "status", "--config", h.AgentYAML, "-o", "json").Output()
	if err != nil {
		t.Fatalf("haroll status: %v", err)
	}
	var slots []agent.SlotStatus
	if err := json.Unmarshal(out, &slots); err != nil {
		t.Fatalf("haroll status -o json: %v\n%s", err, out)
	}
	return slots
}

// assertStatusShowsLive checks that `haroll status` names the live server of
// every slot: in its text table ("app/s1|s1b live s1b") and in its JSON
// (live_server).
func assertStatusShowsLive(t *testing.T, h *harness.Host, live []string) {
	t.Helper()
	out, err := haroll(t, "status", "--config", h.AgentYAML)
	if err != nil {
		t.Fatalf("haroll status: %v", err)
	}
	for i, server := range live {
		slot := fmt.Sprintf("app-%d", i+1)
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 1 || f[0] != slot {
				continue
			}
			found = true
			if i := slices.Index(f, "live"); i < 0 || i+1 >= len(f) || f[i+1] != server {
				t.Errorf("haroll status does not show %s live on %s: %q", slot, server, line)
			}
		}
		if !found {
			t.Errorf("haroll status has no line for %s", slot)
		}
	}
	js, err := exec.Command(harollBin, "status", "--config", h.AgentYAML, "-o", "json").Output()
	if err != nil {
		t.Fatalf("haroll status -o json: %v", err)
	}
	var slots []map[string]any
	if err := json.Unmarshal(js, &slots); err != nil {
		t.Fatalf("haroll status -o json: %v\n%s", err, js)
	}
	for i, s := range slots {
		if i < len(live) && s["live_server"] != live[i] {
			t.Errorf("haroll status -o json: %s live_server %v, want %s", s["slot"], s["live_server"], live[i])
		}
	}
}

// reloadKeepsPairs reloads HAProxy and checks, once the new worker has run
// a few checks, that the pairs are as assertPairs(live, image) wants: the
// new worker loaded the states the agent saved.
func reloadKeepsPairs(t *testing.T, h *harness.Host, live []string, image string) {
	t.Helper()
	if err := h.HAProxy.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := h.WaitAllUp(context.Background()); err != nil {
		t.Error(err)
	}
	assertPairs(t, h, live, image)
}

// assertCapacityKept checks what the sampler saw: never below the start.
func assertCapacityKept(t *testing.T, c harness.Capacity) {
	t.Helper()
	t.Log(c)
	if c.Samples < 10 {
		t.Errorf("only %d capacity samples", c.Samples)
	}
	if c.Min < c.Start {
		t.Errorf("the capacity dipped below its start: %s", c)
	}
}

func TestAPairRedeployUnderPinnedLoadKeepsCapacityAndFlipsEverySlotThenFlipsBack(t *testing.T) {
	requireDeps(t)
	wallTime(t)
	h := startPairHost(t, harness.FixedPorts, nil)
	for n, step := range []struct {
		image string
		live  []string
	}{
		{images.V2, side(h, true)},
		{images.V1, side(h, false)},
	} {
		sampler := h.StartCapacitySampler(context.Background(), "", 50*time.Millisecond)
		res := pinnedLoad(t, h, cookiePersistence, func() {
			run := runTimed(t, nil, "redeploy", "--config", h.AgentYAML, "--image", step.image, "--output", "json")
			if run.err != nil {
				t.Errorf("redeploy %d to %s failed: %v", n+1, step.image, run.err)
			}
			for _, s := range run.report.Slots {
				if s.Result != agent.ResultReplaced {
					t.Errorf("redeploy %d: %s %s", n+1, s.Slot, s.Result)
				}
			}
		})
		c := sampler.Stop()
		assertNoLoss(t, res)
		// The surge's peak (both sides at full weight) lasts from the
		// weight given to the old side's drain, a moment: the sampler
		// need not see it. What it must never see is a dip.
		assertCapacityKept(t, c)
		if want := []string{version(step.image)}; !slices.Equal(res.LastVersions, want) {
			t.Errorf("versions served at the end: %v, want %v", res.LastVersions, want)
		}
		assertPairs(t, h, step.live, step.image)
		assertStatusShowsLive(t, h, step.live)
	}
}

func TestABrokenImageOnTheIdleSideLeavesTheLiveSideUntouchedThenAWorkingOneFlipsOnEphemeralPorts(t *testing.T) {
	requireDeps(t)
	wallTime(t)
	// Ephemeral ports: the idle server is re-pointed at the new container
	// (set server addr), and must end in MAINT all the same.
	h := startPairHost(t, harness.EphemeralPorts, func(o *harness.HostOptions) { o.HealthTimeout = 4 * time.Second })
	before := takeSnapshot(t, h)
	sampler := h.StartCapacitySampler(context.Background(), "", 50*time.Millisecond)
	var run timedRun
	res := pinnedLoad(t, h, cookiePersistence, func() {
		run = runTimed(t, nil, "redeploy", "--config", h.AgentYAML, "--image", images.Broken, "--output", "json")
	})
	c := sampler.Stop()
	if run.err == nil {
		t.Error("the redeploy of a broken image exited 0")
	}
	if len(run.report.Slots) == 0 || run.report.Slots[0].Result != agent.ResultRolledBack {
		t.Errorf("report: %+v, want app-1 rolled_back", run.report.Slots)
	}
	assertNoLoss(t, res)
	assertCapacityKept(t, c)
	if c.Max != c.Start {
		t.Errorf("the capacity changed (%s): the broken side took traffic weight", c)
	}
	if !slices.Equal(res.LastVersions, []string{"v1"}) {
		t.Errorf("versions served at the end: %v, want only v1", res.LastVersions)
	}
	assertPairs(t, h, side(h, false), images.V1)
	after := takeSnapshot(t, h)
	if !slices.Equal(after.containers, before.containers) {
		t.Errorf("containers changed: %v -> %v", before.containers, after.containers)
	}
	// The live side, untouched: same status, weight and address.
	for i := range h.Names {
		if after.servers[i] != before.servers[i] {
			t.Errorf("live server changed: %q -> %q", before.servers[i], after.servers[i])
		}
	}
	assertStatusShowsLive(t, h, side(h, false))

	// Then a working image on the same host: each new container gets a port
	// Docker picks, and the idle server (ipv4@localhost:PORT, a host name) is
	// pointed at it with `set server addr` before its gate. A reload
	// afterwards keeps the new addresses (the state file restores a
	// host-name server's address).
	addrs, err := h.Addrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sampler = h.StartCapacitySampler(context.Background(), "", 50*time.Millisecond)
	res = pinnedLoad(t, h, cookiePersistence, func() {
		run = runTimed(t, nil, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--output", "json")
	})
	c = sampler.Stop()
	if run.err != nil {
		t.Errorf("redeploy of a working image failed: %v", run.err)
	}
	assertNoLoss(t, res)
	assertCapacityKept(t, c)
	if !slices.Equal(res.LastVersions, []string{"v2"}) {
		t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
	}
	assertPairs(t, h, side(h, true), images.V2) // each live server points at its container
	now, err := h.Addrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range now {
		if now[i] == addrs[i] {
			t.Errorf("%s kept its address %s: the new container should have a port of its own", h.Names[i], now[i])
		}
	}
	reloadKeepsPairs(t, h, side(h, true), images.V2)
}

// pairKillPoint is where a pair replacement of app-1 is cut off with SIGKILL:
// right after haroll reports a phase done, or, with draining, once HAProxy
// shows the old live server drained.
type pairKillPoint struct {
	name     string
	after    agent.Phase
	draining bool
	daemon   bool // kill the agent daemon (restarted: it recovers); else the in-process CLI (then haroll recover)
}

var pairKillPoints = []pairKillPoint{
	{name: "created", after: agent.PhaseCreate},
	{name: "booted, gating", after: agent.PhaseBoot, daemon: true},
	{name: "proven", after: agent.PhaseGate},
	{name: "weight given", after: agent.PhaseRestore, daemon: true},
	{name: "old side draining", draining: true},
	{name: "cleanup", after: agent.PhaseDrain, daemon: true},
}

func TestASIGKILLAtEachStepOfAPairReplacementIsFinishedOrUndoneWithOneSideLive(t *testing.T) {
	requireDeps(t)
	wallTime(t)
	h := startPairHost(t, harness.FixedPorts, nil)
	for _, kp := range pairKillPoints {
		mode := "in-process"
		if kp.daemon {
			mode = "daemon"
		}
		t.Run(kp.name+"/"+mode, func(t *testing.T) {
			ctx := context.Background()
			pairs, err := h.Pairs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			oldLive, err := pairs[0].Live()
			if err != nil {
				t.Fatal(err)
			}
			ctrs, err := h.Containers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			oldImage, newImage := ctrs[0].Image, images.V2
			if oldImage == images.V2 {
				newImage = images.V1
			}
			var daemon *harness.AgentProcess
			if kp.daemon {
				if daemon, err = harness.StartAgent(ctx, harollBin, h, ""); err != nil {
					t.Fatal(err)
				}
			}
			sampler := h.StartCapacitySampler(ctx, "", 50*time.Millisecond)
			stopLoad := loadgen.Start(ctx, loadgen.Options{
				URL: h.URL("/"), Rate: 150, SlowURL: h.URL("/slow?ms=2000"), SlowEvery: 500 * time.Millisecond, Clients: pinnedClients,
			})
			time.Sleep(500 * time.Millisecond)
			victim := func(cli *exec.Cmd) *os.Process {
				if daemon != nil {
					return daemon.Cmd.Process
				}
				return cli.Process
			}
			killed := redeployAndKillPair(t, h, newImage, kp, oldLive.Server, victim)
			if daemon != nil {
				<-waitExit(daemon)
				before := len(daemon.Log())
				if daemon, err = harness.StartAgent(ctx, harollBin, h, ""); err != nil { // recovers before it serves
					t.Fatal(err)
				}
				t.Logf("the restarted agent's log:\n%s", daemon.Log()[before:])
				defer daemon.Stop()
			} else if _, err := haroll(t, "recover", "--config", h.AgentYAML); err != nil {
				t.Errorf("recover: %v", err)
			}
			live := waitOneSideLive(t, h, 0)
			time.Sleep(time.Second)
			res := stopLoad()
			c := sampler.Stop()
			t.Logf("killed %s (%s) at %q: load %s", mode, killed, kp.name, res)
			if res.Lost() != 0 {
				t.Errorf("lost requests: %s %v", res, res.Errors)
			}
			assertCapacityKept(t, c)
			// The live side says which way the recovery went: the new
			// side runs the new image, the old side the old one.
			want, finished := oldImage, live != oldLive.Server
			if finished {
				want = newImage
			}
			t.Logf("recovery %s: %s live on %s", map[bool]string{true: "finished the replacement", false: "undid the replacement"}[finished], live, want)
			assertPairs(t, h, []string{live, "s2", "s3"}, "")
			ctrs, err = h.Containers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ctrs[0].Image != want {
				t.Errorf("%s runs %s, but %s is live: want %s", h.Names[0], ctrs[0].Image, live, want)
			}
			for i := 1; i < len(ctrs); i++ {
				if ctrs[i].Image != images.V1 {
					t.Errorf("%s (not redeployed) runs %s", h.Names[i], ctrs[i].Image)
				}
			}
		})
	}
}

// waitOneSideLive waits until slot i has exactly one side live and fully UP,
// the other in MAINT, and returns the live server.
func waitOneSideLive(t *testing.T, h *harness.Host, i int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		pairs, err := h.Pairs(context.Background())
		if err == nil {
			l, err := pairs[i].Live()
			if err == nil && l.FullyUp() && l.Weight == weights[i] && pairs[i].Idle(l.Server).InMaint() {
				return l.Server
			}
			last = fmt.Sprintf("%+v %v", pairs[i], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never settled with one side live at weight %d: %s", h.Names[i], weights[i], last)
	return ""
}

// redeployAndKillPair runs `haroll redeploy --slot app-1` to image and
// SIGKILLs victim at kp; oldLive is app-1's live server before. It returns
// what it killed.
func redeployAndKillPair(t *testing.T, h *harness.Host, image string, kp pairKillPoint, oldLive string, victim func(*exec.Cmd) *os.Process) string {
	t.Helper()
	cli, lines := startRedeploy(t, "--config", h.AgentYAML, "--image", image, "--slot", "app-1")
	defer cli.Wait()
	after := string(kp.after)
	if kp.draining {
		after = ""
	}
	return killAt(t, cli, lines, kp.name, after, func() bool {
		stats, err := h.Servers(context.Background())
		if err != nil {
			return false
		}
		for _, s := range stats {
			if s.Server == oldLive && (s.Weight == 0 || s.InMaint() || s.Status == "DRAIN") {
				t.Logf("old live %s: %s weight %d scur %d", s.Server, s.Status, s.Weight, s.Scur)
				return true
			}
		}
		return false
	}, victim)
}

func TestAnHAProxyReloadMidSurgeLosesNothingAndTheStateFileKeepsTheNewSideLive(t *testing.T) {
	requireDeps(t)
	wallTime(t)
	h := startPairHost(t, harness.FixedPorts, nil)
	perReload := reloadCost(t, h, cookiePersistence)
	var run timedRun
	reloadAt := func(rec map[string]any) (string, time.Duration) {
		switch slot, phase := phaseDone(rec); {
		case slot == "app-1" && phase == string(agent.PhaseBoot):
			return "while app-1's new side gates", 0
		case slot == "app-2" && phase == string(agent.PhaseRestore):
			return "as app-2's new side is given its weight", 0
		case slot == "app-3" && phase == string(agent.PhaseRestore):
			return "while app-3's old side drains", 300 * time.Millisecond
		}
		return "", 0
	}
	sampler := h.StartCapacitySampler(context.Background(), "", 50*time.Millisecond)
	rl := &reloader{t: t, h: h, at: reloadAt}
	res := pinnedLoad(t, h, cookiePersistence, func() {
		run = runTimed(t, rl.onLog, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--output", "json")
		if run.err != nil {
			t.Errorf("redeploy failed: %v", run.err)
		}
		rl.wg.Wait()
	})
	reloads, whys := rl.windows, rl.whys
	c := sampler.Stop()
	t.Logf("reloaded HAProxy %d times: %v", len(reloads), whys)
	if len(reloads) != 3 {
		t.Errorf("reloaded %d times, want 3", len(reloads))
	}
	assertOnlyReloadsFailed(t, res, reloads, perReload)
	assertCapacityKept(t, c)
	if !slices.Equal(res.LastVersions, []string{"v2"}) {
		t.Errorf("versions served at the end: %v, want only v2", res.LastVersions)
	}
	assertPairs(t, h, side(h, true), images.V2)
	assertNothingBeforeTheGate(t, h, run)

	// A reload after the redeploy: the new worker loads the state the agent
	// saved, so the new side stays live and the old one in MAINT, though
	// haproxy.cfg still declares the alt servers disabled.
	reloadKeepsPairs(t, h, side(h, true), images.V2)
	assertStatusShowsLive(t, h, side(h, true))
}
