package integration

// Fleet operations (issue 14) end to end: the fleet lock (file and etcd
// stores), on_failure: rollback, `haroll rollout rollback`, the prepull, the
// agents' history, and a coordinator that dies or loses etcd mid-rollout.
// Each test starts one fleet of 4 hosts with 2 slots each and runs every
// case of its own on it, under load, to keep CI's time down.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
	"github.com/haroll/haroll/internal/etcdtest"
	"github.com/haroll/haroll/internal/tlsconf"
	"github.com/haroll/haroll/rollout"
)

// opsWeights: two slots per host, the fewest with which a host keeps
// serving while one is replaced.
var opsWeights = weights[:2]

// startOpsFleet starts 4 hosts of 2 slots (host i adjusted by hostFor, when
// set) with their agents, for one test.
func startOpsFleet(t *testing.T, hostFor func(i int, o *harness.HostOptions)) *harness.Fleet {
	t.Helper()
	f := startFleetWith(t, harness.FleetOptions{
		Dir: t.TempDir(), Bin: harollBin, Name: fmt.Sprintf("fop%d", time.Now().UnixNano()%1e8), Hosts: fleetHosts,
		Host:    harness.HostOptions{Image: images.V1, Weights: opsWeights, Addressing: harness.FixedPorts, HealthTimeout: 8 * time.Second},
		HostFor: hostFor,
	})
	logHAProxyTrouble(t, f)
	return f
}

var v3Build struct {
	once sync.Once
	ref  string
	err  error
}

// imageV3 is a third good version of the test app (VERSION v3, with a
// HEALTHCHECK like v2), built once for the tests that need it.
func imageV3(t *testing.T) string {
	t.Helper()
	v3Build.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		v3Build.ref = "haroll-it-app:v3"
		_, v3Build.err = harness.BuildTestApp(ctx, harness.ImageOptions{Tag: v3Build.ref, Healthcheck: true, Env: map[string]string{
			"VERSION": "v3", "BOOT_DELAY": app.BootDelay.String(), "WARMUP": app.Warmup.String(), "LATENCY_MAX": app.LatencyMax.String()}})
	})
	if v3Build.err != nil {
		t.Fatal(v3Build.err)
	}
	return v3Build.ref
}

// version is the VERSION an image of the test app reports ("v2" for
// haroll-it-app:v2).
func version(image string) string { return image[strings.LastIndex(image, ":")+1:] }

// loadOps is loadFleet with shorter slow requests (1.5 s, one a second): a
// drain waits for them, and these tests run many rollouts.
func loadOps(f *harness.Fleet) func() []loadgen.Result {
	var stops []func() loadgen.Result
	for _, h := range f.Hosts {
		stops = append(stops, loadgen.Start(context.Background(), loadgen.Options{
			URL: h.URL("/"), Rate: 40, Workers: 32, SlowURL: h.URL("/slow?ms=1500"), SlowEvery: time.Second,
		}))
	}
	time.Sleep(500 * time.Millisecond)
	return func() []loadgen.Result {
		time.Sleep(1500 * time.Millisecond) // the last second shows who serves now
		res := make([]loadgen.Result, len(stops))
		var wg sync.WaitGroup
		for i, stop := range stops {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = stop() }()
		}
		wg.Wait()
		return res
	}
}

// opsConfig writes a coordinator config for f in a directory of its own (a
// machine of its own): the fleet's hosts and certificates, a state file in
// that directory, and the extra YAML keys.
func opsConfig(t *testing.T, f *harness.Fleet, extra string) string {
	t.Helper()
	b, err := os.ReadFile(f.CoordinatorYAML)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	from := "state_file: " + f.StateFile
	if !bytes.Contains(b, []byte(from)) {
		t.Fatalf("%s does not say %q", f.CoordinatorYAML, from)
	}
	body := strings.Replace(string(b), from, "state_file: "+filepath.Join(dir, "rollout.json"), 1) + extra
	p := filepath.Join(dir, "coordinator.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// holder is how the fleet lock names this test's coordinators: user@host.
func holder(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username + "@" + host
}

// harollJSON runs haroll and decodes its stdout (the JSON result) into v;
// it returns stderr (the progress) and the exit error.
func harollJSON(t *testing.T, v any, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, harollBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("haroll %s (%v):\n%s\n%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	if jerr := json.Unmarshal(stdout.Bytes(), v); jerr != nil {
		t.Errorf("haroll %s: stdout is not the JSON result: %v", strings.Join(args, " "), jerr)
	}
	return stderr.String(), err
}

// exitCode is the exit status err says, 0 for nil, -1 when it is not one.
func exitCode(err error) int {
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// pair is two rollouts started at once.
type pair struct {
	a, b *watched
	// first is the one that exited first.
	first, last *watched
}

// startPair starts `haroll rollout` with configA and imageA, and with
// configB and imageB, at once (messages "pair-a" and "pair-b"), and waits
// for both.
func startPair(t *testing.T, configA, imageA, configB, imageB string, extra ...string) pair {
	t.Helper()
	args := func(config, image, msg string) []string {
		return append([]string{"rollout", "--config", config, "--image", image, "--message", msg}, extra...)
	}
	p := pair{a: startHaroll(t, args(configA, imageA, "pair-a")...), b: startHaroll(t, args(configB, imageB, "pair-b")...)}
	deadline := time.After(5 * time.Minute)
	select {
	case <-p.a.done:
		p.first, p.last = p.a, p.b
	case <-p.b.done:
		p.first, p.last = p.b, p.a
	case <-deadline:
		t.Fatalf("neither rollout ended within 5m:\n%s\n%s", p.a.output(), p.b.output())
	}
	_ = p.last.wait(t, 5*time.Minute)
	t.Logf("rollout pair-a (exit %v):\n%s", p.a.err, p.a.output())
	t.Logf("rollout pair-b (exit %v):\n%s", p.b.err, p.b.output())
	return p
}

// dialAgent connects to agent i of f as the coordinator does.
func dialAgent(f *harness.Fleet, i int) (*grpc.ClientConn, error) {
	cfg, err := tlsconf.Client(filepath.Join(f.PKI, "coordinator.crt"), filepath.Join(f.PKI, "coordinator.key"), filepath.Join(f.PKI, "ca.crt"))
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(f.Agents[i].Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// entry is one replacement in an agent's history, with its host (0-based).
type entry struct {
	host int
	*agentpb.HistoryEntry
}

// fleetHistory asks every agent of f for its whole history.
func fleetHistory(t *testing.T, f *harness.Fleet) []entry {
	t.Helper()
	var all []entry
	for i := range f.Agents {
		conn, err := dialAgent(f, i)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := agentpb.NewAgentClient(conn).History(ctx, &agentpb.HistoryRequest{})
		cancel()
		conn.Close()
		if err != nil {
			t.Fatalf("history of agent %d: %v", i+1, err)
		}
		for _, e := range resp.GetEntries() {
			all = append(all, entry{host: i, HistoryEntry: e})
		}
	}
	return all
}

// rolloutIDs returns the distinct rollout ids of the entries that match.
func rolloutIDs(es []entry, match func(entry) bool) []string {
	var ids []string
	for _, e := range es {
		if match(e) && !slices.Contains(ids, e.GetRolloutId()) {
			ids = append(ids, e.GetRolloutId())
		}
	}
	sort.Strings(ids)
	return ids
}

// oneRolloutID is the one rollout id of the replacements by image, or fails.
func oneRolloutID(t *testing.T, es []entry, image string) string {
	t.Helper()
	ids := rolloutIDs(es, func(e entry) bool { return e.GetRequestedImage() == image && e.GetResult() == rollout.ResultReplaced })
	if len(ids) != 1 || ids[0] == "" {
		t.Fatalf("the agents' history has rollout ids %q for the replacements by %s, want one", ids, image)
	}
	return ids[0]
}

// span is when the replacements of one rollout began and ended, fleet-wide.
func span(es []entry, id string) (first, last time.Time) {
	for _, e := range es {
		if e.GetRolloutId() != id {
			continue
		}
		if s := e.GetStart().AsTime(); first.IsZero() || s.Before(first) {
			first = s
		}
		if e := e.GetEnd().AsTime(); e.After(last) {
			last = e
		}
	}
	return first, last
}

// assertRefused checks that out is a refusal of the fleet lock that names
// the rollout that holds it: who, which rollout, why. Two rollouts started
// together meet in the holder's first moments (the lock taken, its holder
// not yet written): the refusal must name it then too.
func assertRefused(t *testing.T, w *watched, winnerID, winnerMsg string) {
	t.Helper()
	out := w.output()
	if code := exitCode(w.err); code != 1 {
		t.Errorf("the refused rollout exited %v, want exit status 1", w.err)
	}
	for _, want := range []string{"the fleet is locked by another rollout", holder(t), winnerID, winnerMsg} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
}

// assertFleetOn checks every host serves image on every slot at its weight,
// with no other container.
func assertFleetOn(t *testing.T, f *harness.Fleet, image string) {
	t.Helper()
	for _, h := range f.Hosts {
		assertServing(t, h, image)
	}
}

// lockedPairs runs issue 14's first test on f through configA and configB
// (one machine's config twice for the file store, two machines' for etcd):
// two rollouts started at once, then, with lockWait, two with --lock-wait.
// It returns the images of the lock-wait pair in the order they ran.
func lockedPairs(t *testing.T, f *harness.Fleet, configA, configB string, lockWait bool) (firstImage, lastImage string) {
	t.Helper()
	v3 := imageV3(t)

	t.Run("of two rollouts started together one runs, the other is refused naming the holder", func(t *testing.T) {
		stopLoad := loadOps(f)
		p := startPair(t, configA, images.V2, configB, v3, "--batch", "4")
		results := stopLoad()
		winner, loser, winnerImage, winnerMsg := p.a, p.b, images.V2, "pair-a"
		if p.a.err != nil {
			winner, loser, winnerImage, winnerMsg = p.b, p.a, v3, "pair-b"
		}
		if winner.err != nil {
			t.Fatalf("both rollouts failed: %v, %v", p.a.err, p.b.err)
		}
		assertFleetLoad(t, results, version(winnerImage))
		assertFleetOn(t, f, winnerImage)
		assertRefused(t, loser, oneRolloutID(t, fleetHistory(t, f), winnerImage), winnerMsg)
	})
	if t.Failed() {
		t.FailNow()
	}
	if !lockWait {
		return "", ""
	}

	t.Run("with --lock-wait the second waits and runs after the first", func(t *testing.T) {
		// Both images differ from what the fleet runs, so that each
		// rollout replaces every slot.
		now, err := f.Hosts[0].Containers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		imageA, imageB := images.V1, images.V2
		if now[0].Image != v3 {
			imageB = v3
		}
		stopLoad := loadOps(f)
		p := startPair(t, configA, imageA, configB, imageB, "--batch", "4", "--lock-wait", "3m")
		results := stopLoad()
		if p.a.err != nil || p.b.err != nil {
			t.Fatalf("a rollout with --lock-wait failed: pair-a %v, pair-b %v", p.a.err, p.b.err)
		}
		firstImage, lastImage = imageA, imageB
		if p.first == p.b {
			firstImage, lastImage = imageB, imageA
		}
		assertFleetLoad(t, results, version(lastImage))
		assertFleetOn(t, f, lastImage)
		es := fleetHistory(t, f)
		firstID, lastID := oneRolloutID(t, es, firstImage), oneRolloutID(t, es, lastImage)
		_, firstEnded := span(es, firstID)
		lastBegan, _ := span(es, lastID)
		t.Logf("rollout %s (%s) ended %s, rollout %s (%s) began %s", firstID, firstImage, firstEnded.Format(time.RFC3339Nano),
			lastID, lastImage, lastBegan.Format(time.RFC3339Nano))
		if !firstEnded.Before(lastBegan) {
			t.Errorf("rollout %s began replacing at %s, before rollout %s ended at %s: they ran together", lastID, lastBegan, firstID, firstEnded)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return firstImage, lastImage
}

// TestFleetOpsFileStore: the fleet lock of the file store (one machine),
// `haroll rollout rollback`, and the agents' history across a restart.
func TestFleetOpsFileStore(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	f := startOpsFleet(t, nil)
	config := opsConfig(t, f, "")
	before, _ := lockedPairs(t, f, config, config, true)
	v3 := imageV3(t)

	t.Run("rollback puts every slot back on the image it ran before the last rollout", func(t *testing.T) {
		stopLoad := loadOps(f)
		var back rollout.Result
		_, err := harollJSON(t, &back, "rollout", "rollback", "--config", config, "--batch", "4", "-o", "json")
		results := stopLoad()
		if err != nil {
			t.Fatalf("rollback failed: %v", err)
		}
		assertFleetLoad(t, results, version(before))
		assertFleetOn(t, f, before)
		if back.Totals.Done != fleetHosts {
			t.Errorf("the rollback's result: %+v, want %d hosts done", back.Totals, fleetHosts)
		}
	})

	t.Run("history survives an agent restart and shows each replacement with its rollout id", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := f.RestartAgent(ctx, harollBin, 0); err != nil {
			t.Fatal(err)
		}
		es := fleetHistory(t, f)
		// Four rollouts changed every slot: the winner of the first pair,
		// the lock-wait pair, the rollback; the refused one none.
		ids := rolloutIDs(es, func(e entry) bool { return e.host == 0 })
		if len(ids) != 4 || slices.Contains(ids, "") {
			t.Fatalf("host 1's history has rollout ids %q, want the 4 rollouts that ran", ids)
		}
		for _, id := range ids {
			for _, slot := range []string{"app-1", "app-2"} {
				n := 0
				for _, e := range es {
					if e.host == 0 && e.GetRolloutId() == id && e.GetSlot() == slot {
						n++
						if e.GetResult() != rollout.ResultReplaced || e.GetFenceToken() == 0 || e.GetImageBefore() == "" ||
							e.GetImageAfter() == "" || e.GetImageBefore() == e.GetImageAfter() || e.GetDigestAfter() == "" {
							t.Errorf("host 1 %s rollout %s: %v, want a replacement with its fence and images", slot, id, e.HistoryEntry)
						}
					}
				}
				if n != 1 {
					t.Errorf("host 1 %s: %d entries of rollout %s, want 1", slot, n, id)
				}
			}
		}
		// Slot by slot, oldest first, each replacement starts from what the
		// one before left: v1 at first, the rollback's image at the end.
		for _, slot := range []string{"app-1", "app-2"} {
			var chain []entry
			for _, e := range es {
				if e.host == 0 && e.GetSlot() == slot {
					chain = append(chain, e)
				}
			}
			slices.SortFunc(chain, func(a, b entry) int { return cmp.Compare(a.GetSeq(), b.GetSeq()) })
			was := images.V1
			for _, e := range chain {
				if e.GetImageBefore() != was {
					t.Errorf("host 1 %s seq %d (rollout %s): before %s, want %s, what the entry before left", slot, e.GetSeq(), e.GetRolloutId(), e.GetImageBefore(), was)
				}
				was = e.GetImageAfter()
			}
			if was != before {
				t.Errorf("host 1 %s: the last entry leaves %s, want %s (the rollback's)", slot, was, before)
			}
		}
		kinds := map[string]string{}
		for _, e := range es {
			kinds[e.GetRolloutId()] = e.GetKind()
		}
		rollbacks := 0
		for _, k := range kinds {
			if k == rollout.KindRollback {
				rollbacks++
			}
		}
		if rollbacks != 1 {
			t.Errorf("rollout kinds in the history: %v, want one rollback", kinds)
		}

		// The same through the CLI: on the host, and across the fleet.
		var onHost, fleet []historyRow
		if _, err := harollJSON(t, &onHost, "status", "--config", f.Hosts[0].AgentYAML, "--history", "-o", "json"); err != nil {
			t.Fatal(err)
		}
		if _, err := harollJSON(t, &fleet, "rollout", "history", "--config", config, "--host", f.Agents[0].Addr, "--slot", "app-2", "-o", "json"); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if n := countRows(onHost, func(r historyRow) bool { return r.RolloutID == id }); n != len(opsWeights) {
				t.Errorf("haroll status --history on host 1 shows %d replacements of rollout %s, want %d (one per slot)", n, id, len(opsWeights))
			}
			if n := countRows(fleet, func(r historyRow) bool { return r.RolloutID == id }); n != 1 {
				t.Errorf("haroll rollout history --host %s --slot app-2 shows %d replacements of rollout %s, want 1", f.Agents[0].Addr, n, id)
			}
		}
		var index []rollout.RolloutRecord
		if _, err := harollJSON(t, &index, "rollout", "history", "--config", config, "--rollouts", "-o", "json"); err != nil {
			t.Fatal(err)
		}
		var indexed []string
		for _, r := range index {
			indexed = append(indexed, r.RolloutID)
		}
		slices.Sort(indexed)
		if !slices.Equal(indexed, ids) {
			t.Errorf("haroll rollout history --rollouts lists %q, want the rollouts that ran %q", indexed, ids)
		}
		if n := countRows(fleet, func(r historyRow) bool { return r.Host != f.Agents[0].Addr || r.Slot != "app-2" }); n != 0 {
			t.Errorf("haroll rollout history --host %s --slot app-2 shows %d rows of other hosts or slots", f.Agents[0].Addr, n)
		}
	})

	t.Run("lock release stops the running rollout before its next step, and --resume finishes it", func(t *testing.T) {
		image := images.V2
		if before == images.V2 {
			image = v3
		}
		pre := snapshotFleet(t, f)
		stopLoad := loadOps(f)
		w := startHaroll(t, "rollout", "--config", config, "--image", image, "--batch", "2", "--message", "to be released")
		w.waitLine(t, stepEnd, 2*time.Minute)
		out, err := haroll(t, "rollout", "lock", "release", "--config", config)
		if err != nil || !containsAll(out, "released the fleet lock", "to be released") {
			t.Errorf("lock release: %v, want it to say whose lock it released", err)
		}
		err = w.wait(t, 2*time.Minute)
		t.Logf("the released rollout (exit %v):\n%s", err, w.output())
		if err == nil || !strings.Contains(w.output(), rollout.ErrLockLost.Error()) {
			t.Errorf("the released rollout exited %v, want a failure saying %q", err, rollout.ErrLockLost)
		}
		after := snapshotFleet(t, f)
		for i, h := range f.Hosts {
			waitIdle(t, f, i, time.Minute)
			assertSafe(t, h)
			if i >= 2 && !slices.Equal(after[i], pre[i]) {
				t.Errorf("host %d is in batch 2 but was touched after the lock was released", i+1)
			}
			if st, err := agentStatus(f, i); err != nil || st.GetClaim() != nil {
				t.Errorf("agent %d: claim %v (%v), want none: lock release ends the claims", i+1, st.GetClaim(), err)
			}
		}
		_, err = haroll(t, "rollout", "--config", config, "--resume")
		results := stopLoad()
		if err != nil {
			t.Fatalf("the resume failed: %v", err)
		}
		assertFleetLoad(t, results, version(image))
		assertFleetOn(t, f, image)
	})
}

// historyRow is what these tests read of a row of `haroll status --history
// -o json` and `haroll rollout history -o json`.
type historyRow struct {
	Host      string `json:"host"`
	Slot      string `json:"slot"`
	RolloutID string `json:"rollout_id"`
}

func countRows(rows []historyRow, match func(historyRow) bool) int {
	n := 0
	for _, r := range rows {
		if match(r) {
			n++
		}
	}
	return n
}

// TestFleetOpsPrepullAndOnFailure runs host 2 on a Docker engine of its own:
// a tag that is broken there fails batch 2, which on_failure: rollback
// answers by putting batch 1 back; an image that engine cannot get stops the
// rollout before any drain.
func TestFleetOpsPrepullAndOnFailure(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	v3 := imageV3(t)
	d := startDockerd(t, images.Broken)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// haroll-it-app:v3 is the good v3 on the machine's engine, the broken
	// app on host 2's.
	if _, err := d.Docker(ctx, "tag", images.Broken, v3); err != nil {
		t.Fatal(err)
	}
	// An image that only the machine's engine has, from a registry that
	// does not answer: host 2's pull is refused at once.
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	unreachable := fmt.Sprintf("127.0.0.1:%d/haroll-it-app:v2", port)
	if _, err := exec.CommandContext(ctx, "docker", "tag", images.V2, unreachable).CombinedOutput(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = harness.RemoveImage(context.Background(), unreachable) })
	f := startOpsFleet(t, func(i int, o *harness.HostOptions) {
		if i == 1 {
			o.DockerHost, o.Addressing, o.HealthTimeout = d.Host, harness.DefaultBridge, 5*time.Second
		}
	})

	t.Run("on_failure rollback puts batch 1 back when batch 2 fails", func(t *testing.T) {
		config := opsConfig(t, f, "on_failure: rollback\n")
		before := snapshotFleet(t, f)
		stopLoad := loadOps(f)
		var res rollout.Result
		_, err := harollJSON(t, &res, "rollout", "--config", config, "--image", v3, "--batch", "1", "--max-failures", "0", "-o", "json")
		results := stopLoad()
		if code := exitCode(err); code != 1 {
			t.Errorf("the rollout exited %v, want exit status 1", err)
		}
		assertFleetLoad(t, results, "v1")
		assertFleetOn(t, f, images.V1)
		after := snapshotFleet(t, f)
		for i := 1; i < len(f.Hosts); i++ {
			if !slices.Equal(after[i], before[i]) {
				t.Errorf("host %d: containers %v -> %v, want the same: batch 2 failed and was rolled back, batches 3-4 never ran", i+1, before[i], after[i])
			}
		}
		if slices.Equal(after[0], before[0]) {
			t.Error("host 1's containers are the ones it had: batch 1 did not run")
		}
		// The report says where every slot of every host is at the end.
		if len(res.Hosts) != fleetHosts {
			t.Fatalf("the result lists %d hosts, want %d", len(res.Hosts), fleetHosts)
		}
		if res.RolledBack != 1 {
			t.Errorf("the result says %d host(s) rolled back, want 1 (host 1, batch 1)", res.RolledBack)
		}
		for i, h := range res.Hosts {
			if len(h.Slots) != len(opsWeights) {
				t.Errorf("host %d: %d slots in the result, want %d", i+1, len(h.Slots), len(opsWeights))
			}
			for _, s := range h.Slots {
				if s.Image != images.V1 {
					t.Errorf("host %d %s: the result says it runs %q (%s), want %s", i+1, s.Slot, s.Image, s.Result, images.V1)
				}
				if i == 0 && s.Result != rollout.ResultRolledBack {
					t.Errorf("host 1 %s: %s, want %s (batch 1, put back)", s.Slot, s.Result, rollout.ResultRolledBack)
				}
			}
		}
		if r := res.Hosts[1].Result; r != rollout.HostFailed {
			t.Errorf("host 2: %s, want %s", r, rollout.HostFailed)
		}
		for _, i := range []int{2, 3} {
			if r := res.Hosts[i].Result; r != rollout.HostNotRun {
				t.Errorf("host %d: %s, want %s", i+1, r, rollout.HostNotRun)
			}
		}
	})

	t.Run("an image one host cannot get stops the rollout before any drain", func(t *testing.T) {
		before := make([]snapshot, len(f.Hosts))
		for i, h := range f.Hosts {
			before[i] = takeSnapshot(t, h)
		}
		stopLoad := loadOps(f)
		sampler := sampleOut(t, f)
		out, err := haroll(t, "rollout", "--config", f.CoordinatorYAML, "--image", unreachable, "--batch", "1")
		maxHosts, _ := sampler.finish()
		results := stopLoad()
		if code := exitCode(err); code != 1 {
			t.Errorf("the rollout exited %v, want exit status 1", err)
		}
		assertFleetLoad(t, results, "") // whatever the test before left
		if maxHosts != 0 {
			t.Errorf("a server was taken out of service (%v): the rollout did not stop before its first drain", sampler.worst)
		}
		for i, h := range f.Hosts {
			if after := takeSnapshot(t, h); !slices.Equal(after.servers, before[i].servers) || !slices.Equal(after.containers, before[i].containers) {
				t.Errorf("host %d changed: %v -> %v", i+1, before[i], after)
			}
		}
		if !strings.Contains(out, f.Agents[1].Addr) || !strings.Contains(out, unreachable) {
			t.Errorf("the rollout does not say which host could not get which image")
		}
	})
}

// etcdConfig is the coordinator config's store section for e: its
// endpoint with mutual TLS, a lease of 5 s.
func etcdConfig(e *etcdtest.Server) string {
	return fmt.Sprintf("store: etcd\netcd:\n  endpoints: [%s]\n  prefix: /haroll/it\n  lock_ttl: 5s\n  tls: {ca: %s, cert: %s, key: %s}\n",
		e.Endpoint(), e.CA, e.ClientCert, e.ClientKey)
}

// stepEnd matches the progress line of the end of batch 1's first step.
var stepEnd = regexp.MustCompile(`^batch 1/\d+ step 1/\d+ \S+\s+end: `)

// TestFleetOpsEtcd: two machines (two config directories) share the fleet
// through etcd: the lock between them, a coordinator killed on one and
// resumed on the other, and etcd going away mid-rollout.
func TestFleetOpsEtcd(t *testing.T) {
	requireDeps(t)
	t.Parallel() // a fleet of its own: beside another test (main_test.go)
	e := etcdtest.Start(t, etcdtest.Options{TLS: true})
	f := startOpsFleet(t, nil)
	machineA, machineB := opsConfig(t, f, etcdConfig(e)), opsConfig(t, f, etcdConfig(e))
	// Waiting for the lock (--lock-wait) is the file store's test; here the
	// resume below waits for a killed holder's lease to lapse.
	lockedPairs(t, f, machineA, machineB, false)
	v3 := imageV3(t)

	t.Run("a coordinator killed on one machine is resumed from another once its lease lapsed", func(t *testing.T) {
		now, err := f.Hosts[0].Containers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		image := v3
		if now[0].Image == v3 {
			image = images.V2
		}
		stopLoad := loadOps(f)
		first := startHaroll(t, "rollout", "--config", machineA, "--image", image, "--batch", "2")
		first.waitLine(t, stepEnd, 2*time.Minute)
		waitHostOut(t, f.Hosts[0])
		if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = first.wait(t, 10*time.Second)
		t.Logf("haroll rollout on machine A, killed:\n%s", first.output())
		// Its hosts stay claimed: a person's redeploy of one that it has not
		// reached yet is refused, naming the rollout, and changes nothing.
		killedID := oneRolloutID(t, fleetHistory(t, f), image)
		// Machine B sees the killed coordinator's lock until its lease lapses.
		var lock struct {
			Held bool              `json:"held"`
			Lock *rollout.LockInfo `json:"lock"`
		}
		if _, err := harollJSON(t, &lock, "rollout", "lock", "status", "--config", machineB, "-o", "json"); err != nil {
			t.Error(err)
		} else if !lock.Held || lock.Lock == nil || lock.Lock.RolloutID != killedID || lock.Lock.Expires.IsZero() {
			t.Errorf("lock status on machine B: %+v, want held by rollout %s with its lease's expiry", lock, killedID)
		}
		idle := takeSnapshot(t, f.Hosts[3])
		manual, err := haroll(t, "redeploy", "--config", f.Hosts[3].AgentYAML, "--image", image)
		if err == nil || !containsAll(manual, "host belongs to rollout "+killedID, holder(t), "--break-claim") {
			t.Errorf("a manual redeploy of host 4, claimed by the killed rollout %s: %v, want it refused naming the rollout", killedID, err)
		}
		if after := takeSnapshot(t, f.Hosts[3]); !slices.Equal(after.servers, idle.servers) || !slices.Equal(after.containers, idle.containers) {
			t.Errorf("the refused redeploy changed host 4: %v -> %v", idle, after)
		}
		// The killed coordinator's lease lapses after lock_ttl.
		out, err := haroll(t, "rollout", "--config", machineB, "--resume", "--lock-wait", "1m")
		results := stopLoad()
		if err != nil {
			t.Fatalf("the resume on machine B failed: %v", err)
		}
		assertFleetLoad(t, results, version(image))
		assertFleetOn(t, f, image)
		// Machine B had no state of its own: it came from etcd.
		for _, m := range []string{machineA, machineB} {
			if leftover, _ := filepath.Glob(filepath.Join(filepath.Dir(m), "rollout.json*")); len(leftover) > 0 {
				t.Errorf("a coordinator on the etcd store wrote state files: %v", leftover)
			}
		}
		finished := donePairs(first.output())
		if len(finished) == 0 {
			t.Fatal("machine A's rollout printed no finished pair before it was killed")
		}
		for _, p := range donePairs(out) {
			if slices.Contains(finished, p) {
				t.Errorf("the resume redid %s, finished before the kill", p)
			}
		}
	})

	t.Run("etcd stopped mid-rollout stops the coordinator before its next step, and --resume finishes", func(t *testing.T) {
		before := snapshotFleet(t, f)
		stopLoad := loadOps(f)
		w := startHaroll(t, "rollout", "--config", machineA, "--image", images.V1, "--batch", "2")
		w.waitLine(t, stepEnd, 2*time.Minute)
		e.Stop()
		stoppedAt := time.Now()
		err := w.wait(t, 2*time.Minute)
		t.Logf("haroll rollout (exit %v, %s after etcd stopped):\n%s", err, time.Since(stoppedAt).Round(time.Millisecond), w.output())
		if err == nil {
			t.Error("the rollout exited 0 without etcd")
		}
		for i := range f.Agents {
			waitIdle(t, f, i, time.Minute)
		}
		after := snapshotFleet(t, f)
		for i, h := range f.Hosts {
			assertSafe(t, h)
			if i >= 2 && !slices.Equal(after[i], before[i]) {
				t.Errorf("host %d is in batch 2 but was touched after etcd stopped", i+1)
			}
		}
		e.Start()
		_, err = haroll(t, "rollout", "--config", machineB, "--resume", "--lock-wait", "1m")
		results := stopLoad()
		if err != nil {
			t.Fatalf("the resume once etcd is back failed: %v", err)
		}
		assertFleetLoad(t, results, "v1")
		assertFleetOn(t, f, images.V1)
	})
}
