package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/integration/harness"
)

// startDockerd starts a private Docker daemon (see harness.Dockerd) holding
// the test images v1 and v2 and the images given, and stops it when the
// test ends. Without what it needs it skips, or fails when CI is set.
func startDockerd(t *testing.T, more ...string) *harness.Dockerd {
	t.Helper()
	if why := harness.DockerdMissing(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s, and CI is set", why)
		}
		t.Skip(why + " (CI unset: skipping)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := harness.StartDockerd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if err := d.Load(ctx, append([]string{images.V1, images.V2}, more...)...); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestADockerDaemonRestartMidReplacement restarts the Docker daemon that
// runs a host's containers (a private dockerd with --live-restore: SIGTERM,
// wait for it to exit, start it again) while haroll replaces slot 1
// stop-first under load: once while the slot drains (the new container
// already created, the server at weight 0), once while the new container
// boots (started, its gate not yet passed), with health.docker wait and
// watch. The containers run on through the restart. haroll must lose no
// request and end consistent: the slot on the new image at its weight, or
// rolled back to the old container, with no extra container and no journal
// left, and a report that says which; each case also says which of the two
// it must be.
func TestADockerDaemonRestartMidReplacement(t *testing.T) {
	requireDeps(t)
	// v2 booting for 2.5 s: the daemon's API is away for about a second from
	// its SIGTERM, and that must fall inside the boot also when haroll's own
	// probe decides (with health.docker watch it calls Docker only while
	// the app does not answer yet; v2 answers 0.7 s after its start).
	slowV2 := "haroll-it-app:v2-slowboot"
	bctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := harness.BuildTestApp(bctx, harness.ImageOptions{Tag: slowV2, Healthcheck: true, Env: map[string]string{
		"VERSION": "v2", "BOOT_DELAY": "2.5s", "WARMUP": app.Warmup.String(), "LATENCY_MAX": app.LatencyMax.String()}}); err != nil {
		t.Fatal(err)
	}
	d := startDockerd(t, slowV2)
	version, major, err := d.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("private dockerd %s", version)
	const healthTimeout = 6 * time.Second
	// Docker before 23.0 stops running a container's health checks when a
	// live-restore restart restores it (moby/moby#41871, fixed by #41935):
	// its health stays what it was, "starting" for a container that was
	// booting.
	healthResumes := major >= 23
	for _, tc := range []struct {
		name         string
		healthDocker string // health.docker
		image        string // slot 1 is redeployed to it
		// after is the phase of slot 1 whose end triggers the restart;
		// drained also waits for HAProxy to show the server at weight 0.
		after   agent.Phase
		drained bool
		// before is the phase that must not have ended when the restart
		// begins, or the case did not test what it says.
		before agent.Phase
		// want says, from what happened, how the slot must end ("": replaced
		// or rolled back) and why.
		want func(tl *timeline, away time.Duration) (agent.Result, string)
	}{
		// Docker is not called while the slot drains: when the daemon is
		// back before the drain ends, nothing fails. When it is not (a slow
		// restart), the stop after the drain fails and the slot is rolled
		// back once the daemon answers (the socket switch's "docker gone"
		// case in outage_test.go).
		{name: "mid-drain", healthDocker: agent.DockerHealthWait, image: images.V2, after: agent.PhaseCreate, drained: true, before: agent.PhaseDrain,
			want: func(tl *timeline, _ time.Duration) (agent.Result, string) {
				if tl.before(dockerdBack, "haroll: phase done "+string(agent.PhaseDrain)) {
					return agent.ResultReplaced, "the daemon was back before the drain ended"
				}
				return "", ""
			}},
		// The boot waits for the image's HEALTHCHECK through the restart
		// (within health.timeout). An engine that no longer runs the checks
		// after the restore (Docker < 23, moby#41871) would leave it
		// "starting" for good, but haroll runs the check itself until
		// Docker's first one reports (health.docker_start_interval, on by
		// default), so the restart is waited out as with watch. With
		// docker_start_interval 0 the slot would be rolled back at
		// health.timeout on such engines (not run here).
		{name: "mid-boot health-wait", healthDocker: agent.DockerHealthWait, image: slowV2, after: agent.PhaseStart, before: agent.PhaseBoot,
			want: func(_ *timeline, away time.Duration) (agent.Result, string) {
				if away < healthTimeout/2 {
					why := "the daemon was away " + away.Round(time.Millisecond).String() + ", well within health.timeout, and haroll ran the HEALTHCHECK itself"
					if !healthResumes {
						why += " (Docker " + version + " runs none after a live-restore, moby#41871)"
					}
					return agent.ResultReplaced, why
				}
				return "", ""
			}},
		// With watch, haroll's own probe decides and Docker only vetoes
		// (unhealthy, exited): the restart is waited out.
		{name: "mid-boot health-watch", healthDocker: agent.DockerHealthWatch, image: slowV2, after: agent.PhaseStart, before: agent.PhaseBoot,
			want: func(_ *timeline, away time.Duration) (agent.Result, string) {
				if away < healthTimeout/2 {
					return agent.ResultReplaced, "the daemon was away " + away.Round(time.Millisecond).String() + ", well within health.timeout"
				}
				return "", ""
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			h, err := harness.StartHost(sctx, harness.HostOptions{
				Dir: t.TempDir(), Name: fmt.Sprintf("hdr%d", time.Now().UnixNano()%1e9), Image: images.V1,
				Weights: weights, Addressing: harness.DefaultBridge, HealthTimeout: healthTimeout,
				HealthDocker: tc.healthDocker, Strategy: agent.StrategyStopFirst, DockerHost: d.Host,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(h.Close)
			before := takeSnapshot(t, h)

			tl := newTimeline()
			trigger := make(chan struct{})
			var once sync.Once
			var run timedRun
			var away time.Duration // from the SIGTERM until the daemon answered again
			restarted := false
			res := underLoad(t, h, func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					run = runTimed(t, func(rec map[string]any) {
						if slot, phase := phaseDone(rec); slot == "app-1" {
							tl.add("haroll: phase done " + phase)
							if phase == string(tc.after) {
								once.Do(func() { close(trigger) })
							}
						} else if rec["msg"] == "phase failed" || strings.Contains(fmt.Sprint(rec["msg"]), "answer") {
							tl.add(fmt.Sprintf("haroll: %s %v %v", rec["msg"], rec["phase"], rec["error"]))
						}
					}, "redeploy", "--config", h.AgentYAML, "--image", tc.image, "--slot", "app-1", "--output", "json")
				}()
				select {
				case <-trigger:
				case <-done:
					t.Errorf("the redeploy ended before slot 1's %s phase", tc.after)
					return
				}
				if tc.drained {
					waitDrainStarts(t, h, 0)
					tl.add("haproxy: s1 at weight 0")
				}
				tl.add("dockerd: SIGTERM")
				rt, err := d.Restart(ctx)
				if err != nil {
					t.Errorf("restart the private dockerd: %v", err)
				} else {
					restarted, away = true, rt.Back
					tl.add(dockerdBack)
					t.Logf("dockerd restarted: %s", rt)
				}
				<-done
			})
			t.Logf("timeline:\n%s", tl)
			if !restarted {
				t.FailNow()
			}
			if !tl.before("dockerd: SIGTERM", "haroll: phase done "+string(tc.before)) {
				t.Errorf("the restart did not begin before slot 1's %s phase ended", tc.before)
			}

			assertNoLoss(t, res)
			assertSafe(t, h)
			if _, err := os.Stat(filepath.Join(h.Opts.Dir, "state", "journal.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the journal is still there (%v): the replacement was left unfinished", err)
			}
			if len(run.report.Slots) != 1 {
				t.Fatalf("report: %+v, want slot app-1 alone", run.report)
			}
			rep := run.report.Slots[0]
			if want, why := tc.want(tl, away); want != "" && rep.Result != want {
				t.Errorf("slot 1 %s (%s): want %s, as %s", rep.Result, rep.Err, want, why)
			}
			switch rep.Result {
			case agent.ResultReplaced:
				if run.err != nil {
					t.Errorf("slot replaced, but haroll exited with %v", run.err)
				}
				if !slices.Equal(res.LastVersions, []string{"v1", "v2"}) {
					t.Errorf("versions served at the end: %v, want v1 (slots 2, 3) and v2 (slot 1)", res.LastVersions)
				}
				after := takeSnapshot(t, h)
				if after.containers[0].Image != tc.image || !slices.Equal(after.containers[1:], before.containers[1:]) {
					t.Errorf("containers: %v -> %v, want slot 1 alone on %s", before.containers, after.containers, tc.image)
				}
				t.Logf("outcome: slot 1 replaced")
			case agent.ResultRolledBack:
				if run.err == nil {
					t.Error("slot rolled back, but haroll exited 0")
				}
				assertBackOnV1(t, h, before, res)
				t.Logf("outcome: slot 1 rolled back: %s", rep.Err)
			default:
				t.Errorf("slot 1: %s (%s), want replaced or rolled_back", rep.Result, rep.Err)
			}
		})
	}
}

// dockerdBack is the timeline's event for the private daemon answering again.
const dockerdBack = "dockerd: answers again"

// timeline collects what happened when, from several goroutines.
type timeline struct {
	mu     sync.Mutex
	begin  time.Time
	events []string
	at     map[string]time.Duration // first time of each event
}

func newTimeline() *timeline { return &timeline{begin: time.Now(), at: map[string]time.Duration{}} }

func (tl *timeline) add(event string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	d := time.Since(tl.begin)
	if _, ok := tl.at[event]; !ok {
		tl.at[event] = d
	}
	tl.events = append(tl.events, fmt.Sprintf("%8s  %s", d.Round(time.Millisecond), event))
}

// before reports whether event a happened, and b did not happen before it.
func (tl *timeline) before(a, b string) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	ta, ok := tl.at[a]
	if !ok {
		return false
	}
	tb, ok := tl.at[b]
	return !ok || ta < tb
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.events, "\n")
}
