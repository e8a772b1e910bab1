package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haroll/haroll/docker"
)

func TestStartFirstBootsTheNewContainerWhileTheOldOneDrains(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	w.startFirst()
	w.sessions = 200 // polls; the boot is done long before
	a := newTestAgent(t, w, slot)
	oldAddr := w.servers["app/srv-app-1"].stat.Addr
	var phases []Phase
	rep, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, func(e Event) {
		phases = append(phases, e.Phase)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Phase{PhaseCreate, PhaseStart, PhaseBoot, PhaseDrain, PhaseAddress, PhaseGate, PhaseRestore, PhaseCleanup}
	if !slices.Equal(phases, want) {
		t.Fatalf("phases %v, want %v: the boot must end before the drain", phases, want)
	}
	// The drain runs beside the create, start and boot: its maintenance
	// comes at some point among them, but before the address switch.
	calls := w.mutations()
	maint := slices.Index(calls, "SetState app/srv-app-1 maint")
	if maint < 0 || maint > slices.Index(calls, "SetAddr app/srv-app-1 127.0.0.1:20002") {
		t.Fatalf("calls %q: want maintenance before the address switch", calls)
	}
	calls = slices.Delete(calls, maint, maint+1)
	wantCalls := []string{
		"SetWeight app/srv-app-1 0", "Rename app-1 app-1-haroll-prev", "Clone app:v2 app-1", "Start app-1",
		"SetAddr app/srv-app-1 127.0.0.1:20002", "LeaveMaint app/srv-app-1 ready", "SetWeight app/srv-app-1 7",
		"Stop app-1-haroll-prev", "Remove app-1-haroll-prev",
	}
	if !slices.Equal(calls, wantCalls) {
		t.Fatalf("calls\n%q\nwant\n%q", calls, wantCalls)
	}
	if st := w.servers["app/srv-app-1"].stat; st.Addr == oldAddr || st.Weight != 7 {
		t.Fatalf("server at %s weight %d", st.Addr, st.Weight)
	}
	if r := rep.Slots[0]; r.Result != ResultReplaced {
		t.Fatalf("%+v", r)
	}
}

func TestStartFirstWithABrokenImageLeavesTheOldContainerServingUntouched(t *testing.T) {
	w := newWorld(t)
	slot := w.addSlot("app-1", 7)
	w.startFirst()
	a := newTestAgent(t, w, slot)
	a.cfg.Health.Timeout = 200 * time.Millisecond
	oldID := w.byName("app-1").ID
	oldAddr := w.servers["app/srv-app-1"].stat.Addr
	_, err := a.Redeploy(context.Background(), Request{Image: "app:broken"}, nil)
	if !errors.Is(err, ErrNotHealthy) {
		t.Fatalf("got %v", err)
	}
	assertRolledBack(t, w, oldID)
	for _, c := range w.mutations() {
		if strings.HasPrefix(c, "Stop app-1-haroll-prev") || strings.HasPrefix(c, "SetAddr") || strings.HasPrefix(c, "ForceHealthDown") {
			t.Fatalf("the old container or its server was touched beyond the weight: %q", w.mutations())
		}
	}
	if st := w.servers["app/srv-app-1"].stat; st.Addr != oldAddr || len(w.ctrs) != 1 {
		t.Fatalf("server at %s, %d containers", st.Addr, len(w.ctrs))
	}
}

func TestTheStrategyIsChosenFromTheContainersPorts(t *testing.T) {
	for _, tc := range []struct {
		strategy   string
		startFirst bool // the containers can run side by side
		want       string
	}{
		{"", false, "stop-first"},
		{StrategyAuto, true, "start-first"},
		{StrategyStopFirst, true, "stop-first"},
		{StrategyStartFirst, true, "start-first"},
		{StrategyStartFirst, false, "error"},
	} {
		w := newWorld(t)
		slot := w.addSlot("app-1", 7)
		slot.Strategy = tc.strategy
		if tc.startFirst {
			w.startFirst()
		}
		a := newTestAgent(t, w, slot)
		_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
		got := "stop-first"
		switch {
		case err != nil:
			got = "error"
			if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "fixed host ports (127.0.0.1:") {
				t.Errorf("%q: %v: want a preflight error naming the fixed port", tc.strategy, err)
			}
			if len(w.mutations()) != 0 {
				t.Errorf("%q: refused, yet %q", tc.strategy, w.mutations())
			}
		case !slices.Contains(w.mutations(), "Stop app-1"):
			got = "start-first"
		}
		if got != tc.want {
			t.Errorf("strategy %q, side by side %v: %s, want %s", tc.strategy, tc.startFirst, got, tc.want)
		}
	}
}

func TestWithHealthDockerWaitTheStartIntervalReachesDocker(t *testing.T) {
	for _, interval := range []time.Duration{DefaultDockerStartInterval, 0, 40 * time.Millisecond} {
		t.Run(interval.String(), func(t *testing.T) {
			w := newWorld(t)
			a := newTestAgent(t, w, w.addSlot("app-1", 7)) // the default config
			if interval != DefaultDockerStartInterval {
				a.cfg.Health.DockerStartInterval = interval
			}
			if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if !slices.Equal(w.startIntervals, []time.Duration{interval}) {
				t.Fatalf("WaitHealthy was given %v, want [%v]", w.startIntervals, interval)
			}
		})
	}
}

func TestWithHealthDockerWatchTheProbeDecidesAndDockerCanOnlyFail(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		w := newWorld(t)
		a := newTestAgent(t, w, w.addSlot("app-1", 7))
		a.cfg.Health.Docker = DockerHealthWatch
		// Docker's own check has not run yet: with wait the fake would
		// still pass (it reports running containers healthy), so watch is
		// told apart by never asking for it.
		w.failing("WaitHealthy", errors.New("WaitHealthy must not be called with health.docker watch"))
		if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// probedFirst is Docker whose WaitHealthy notes whether the agent's probe
// had answered before it was asked.
type probedFirst struct {
	Docker
	probed, asked, early atomic.Bool
}

func (d *probedFirst) WaitHealthy(ctx context.Context, id string, every time.Duration) error {
	d.asked.Store(true)
	if !d.probed.Load() {
		d.early.Store(true)
	}
	return d.Docker.WaitHealthy(ctx, id, every)
}

func TestWithHealthDockerWaitTheCheapProbeAnswersBeforeTheHealthcheckIsRun(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	d := &probedFirst{Docker: w}
	a.docker = d
	var started atomic.Bool // the new container was started
	probe := a.probe
	a.probe = func(ctx context.Context, addr address) error {
		err := probe(ctx, addr)
		if err == nil && started.Load() {
			d.probed.Store(true)
		}
		return err
	}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, after(w, PhaseStart, func() { started.Store(true) })); err != nil {
		t.Fatal(err)
	}
	if !d.asked.Load() || d.early.Load() {
		t.Fatalf("WaitHealthy asked %v, before the probe answered %v: want it asked, after", d.asked.Load(), d.early.Load())
	}
}

func TestDockerReportingTheNewContainerUnhealthyOrExitedFailsTheBootInEitherMode(t *testing.T) {
	for _, mode := range []string{DockerHealthWait, DockerHealthWatch} {
		for _, tc := range []struct {
			name string
			set  func(c *docker.Container)
			want error
			text string
		}{
			{"unhealthy", func(c *docker.Container) {
				c.Health, c.Trouble = "unhealthy", "3 failed checks, last check exit code 1"
			}, docker.ErrUnhealthy, "3 failed checks"},
			{"exited", func(c *docker.Container) { c.Running, c.Trouble = false, "status exited, exit code 2" }, docker.ErrExited, "exit code 2"},
			// Docker drops a stopped container's ports and addresses: an
			// image that exits at once must not read as a config problem.
			{"exited at once, no address left", func(c *docker.Container) {
				c.Running, c.Trouble, c.Ports, c.Networks = false, "status exited, exit code 127", nil, nil
			}, docker.ErrExited, "exit code 127"},
			{"restarting", func(c *docker.Container) {
				c.Restarting, c.Trouble = true, "it crashed with exit code 1 and Docker is restarting it"
			}, docker.ErrExited, "restarting"},
		} {
			t.Run(mode+" "+tc.name, func(t *testing.T) {
				w := newWorld(t)
				a := newTestAgent(t, w, w.addSlot("app-1", 7))
				a.cfg.Health.Docker = mode
				a.cfg.Health.Timeout = 10 * time.Second
				events := after(w, PhaseStart, func() {
					w.mu.Lock()
					defer w.mu.Unlock()
					tc.set(w.byName("app-1"))
				})
				begin := time.Now()
				_, err := a.Redeploy(context.Background(), Request{Image: "app:broken"}, events)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || time.Since(begin) > 5*time.Second {
					t.Fatalf("got %v after %s: want Docker's report (%v, %q), well before health.timeout", err, time.Since(begin), tc.want, tc.text)
				}
			})
		}
	}
}

func TestAStaticIPOrMACIsTreatedLikeAFixedHostPort(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      func(c *docker.Container)
		strategy string
		want     string // stop-first, start-first or the preflight error
	}{
		{"static IP, auto", func(c *docker.Container) { c.StaticAddresses = []string{"10.213.7.11 on front"} }, StrategyAuto, "stop-first"},
		{"static IP, start-first", func(c *docker.Container) { c.StaticAddresses = []string{"10.213.7.11 on front"} }, StrategyStartFirst,
			"cannot run beside its replacement: it has static IP addresses (10.213.7.11 on front); use stop-first or auto"},
		{"static MAC, auto", func(c *docker.Container) { c.MacAddress = "02:42:0a:d5:07:0b" }, StrategyAuto, "stop-first"},
		{"static MAC, start-first", func(c *docker.Container) { c.MacAddress = "02:42:0a:d5:07:0b" }, StrategyStartFirst,
			"it has a static MAC address (02:42:0a:d5:07:0b)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addSlot("app-1", 7)
			slot.Strategy = tc.strategy
			w.startFirst() // no fixed host port
			tc.set(w.byName("app-1"))
			a := newTestAgent(t, w, slot)
			_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
			got := "start-first"
			switch {
			case err != nil:
				got = err.Error()
				if !errors.Is(err, ErrPreflight) || len(w.mutations()) != 0 {
					t.Errorf("%v, after %q: want a preflight error that changed nothing", err, w.mutations())
				}
			case slices.Contains(w.mutations(), "Stop app-1"):
				got = "stop-first"
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestARmContainerIsNeverStoppedBeforeItsReplacementIsProven(t *testing.T) {
	for _, tc := range []struct {
		name        string
		strategy    string
		startFirst  bool // no fixed host port
		wantRefused string
	}{
		{"fixed host port, auto", StrategyAuto, false, "it publishes fixed host ports (127.0.0.1:20001->8080/tcp)"},
		{"stop-first", StrategyStopFirst, true, "strategy is stop-first"},
		{"auto, can run beside", StrategyAuto, true, ""},
		{"start-first", StrategyStartFirst, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			slot := w.addSlot("app-1", 7)
			slot.Strategy = tc.strategy
			if tc.startFirst {
				w.startFirst()
			}
			w.byName("app-1").AutoRemove = true
			oldID := w.byName("app-1").ID
			a := newTestAgent(t, w, slot)
			a.cfg.Health.Timeout = 200 * time.Millisecond
			_, err := a.Redeploy(context.Background(), Request{Image: "app:broken"}, nil)
			if tc.wantRefused != "" {
				if !errors.Is(err, ErrPreflight) || !errors.Is(err, ErrAutoRemove) || !strings.Contains(err.Error(), "--rm") || !strings.Contains(err.Error(), tc.wantRefused) {
					t.Fatalf("got %v: want a preflight refusal naming --rm and %q", err, tc.wantRefused)
				}
				if len(w.mutations()) != 0 {
					t.Fatalf("refused, yet %q", w.mutations())
				}
				return
			}
			// Start-first: a broken image is rolled back, the old
			// container never stopped.
			if !errors.Is(err, ErrNotHealthy) {
				t.Fatalf("got %v, want the broken image rolled back", err)
			}
			if slices.Contains(w.mutations(), "Stop app-1-haroll-prev") {
				t.Fatalf("the --rm container was stopped: %q", w.mutations())
			}
			assertRolledBack(t, w, oldID)
		})
	}
}
