package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/etcdtest"
	"github.com/haroll/haroll/rollout"
)

// holdLock takes the fleet lock of store as another rollout would, until
// the test ends.
func holdLock(t *testing.T, store rollout.Store) rollout.Lease {
	t.Helper()
	l, err := store.Acquire(t.Context(), rollout.LockInfo{RolloutID: "20260101T000000Z-beef", Holder: "alice@deploy-1",
		Message: "hotfix 42", Kind: rollout.KindRollout, Image: "app:v1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Release(t.Context()) })
	return l
}

func TestARolloutIsRefusedWhileAnotherHoldsTheFleetLockAndTheRefusalNamesIt(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [127.0.0.1:1]\nconnect_timeout: 1s\n")
	state := filepath.Join(t.TempDir(), "rollout.json")
	holdLock(t, rollout.NewFileStore(state))
	for _, wait := range []string{"0", "300ms"} {
		t0 := time.Now()
		out, err := runRollout(t, "--config", p, "--insecure", "--state-file", state, "--image", "app:v2", "--lock-wait", wait)
		var le *rollout.LockedError
		if !errors.As(err, &le) {
			t.Fatalf("--lock-wait %s: got %v, want a *LockedError\n%s", wait, err, out)
		}
		for _, want := range []string{"the fleet is locked by another rollout", "20260101T000000Z-beef", "alice@deploy-1", `"hotfix 42"`,
			"app:v1", state + ".lock", "--lock-wait", "haroll rollout lock release"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("--lock-wait %s: %q lacks %q", wait, err, want)
			}
		}
		if strings.Contains(out, "127.0.0.1:1") {
			t.Errorf("--lock-wait %s: a refused rollout asked an agent: %s", wait, out)
		}
		if wait == "300ms" && time.Since(t0) < 300*time.Millisecond {
			t.Errorf("--lock-wait 300ms refused after %v", time.Since(t0))
		}
	}
	// --resume too, before it reads anything but the state.
	_, err := runRollout(t, "--config", p, "--insecure", "--state-file", writeState(t, false), "--resume")
	if err == nil || !strings.Contains(err.Error(), "no host was touched") {
		t.Errorf("resume of another state file (its own lock): %v", err)
	}
}

func TestARolloutHoldsTheLockWhileItRunsThenReleasesItAndRecordsItselfInTheHistory(t *testing.T) {
	p := writeCoordinatorConfig(t, "hosts: [127.0.0.1:1]\nconnect_timeout: 1s\n")
	state := filepath.Join(t.TempDir(), "rollout.json")
	_, err := runRollout(t, "--config", p, "--insecure", "--state-file", state, "--image", "app:v2", "--message", "release 7")
	if err == nil || !strings.Contains(err.Error(), "no host was touched") {
		t.Fatalf("got %v, want the preflight refusal (no agent)", err)
	}
	store := rollout.NewFileStore(state)
	if st, err := store.Status(t.Context()); err != nil || st != nil {
		t.Errorf("lock after the rollout: %+v, %v, want it free", st, err)
	}
	recs, err := store.Rollouts(t.Context(), 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("history %+v, %v: want one record", recs, err)
	}
	if r := recs[0]; r.Outcome != rollout.OutcomeRefused || r.Message != "release 7" || r.Image != "app:v2" || r.Token == 0 || r.Kind != rollout.KindRollout || !strings.Contains(r.Holder, "@") {
		t.Errorf("record %+v", r)
	}
}

// etcdConfig is a coordinator config whose store is the etcd srv, over
// mutual TLS: what any machine of the fleet's operators has.
func etcdConfig(t *testing.T, srv *etcdtest.Server) string {
	t.Helper()
	return writeCoordinatorConfig(t, fmt.Sprintf(`hosts: [127.0.0.1:1]
store: etcd
etcd:
  endpoints: [%s]
  prefix: /haroll/cli
  tls: {cert: %s, key: %s, ca: %s}
  lock_ttl: 5s
`, srv.Endpoint(), srv.ClientCert, srv.ClientKey, srv.CA))
}

func TestLockStatusAndReleaseFromAnotherMachineWithOnlyTheEtcdConfig(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{TLS: true})
	p := etcdConfig(t, srv)
	out, err := runRollout(t, "lock", "status", "--config", p, "--insecure")
	if err != nil || !strings.Contains(out, "the fleet lock is free") {
		t.Fatalf("status of a free lock: %q, %v", out, err)
	}

	store, err := rollout.OpenEtcdStore(rollout.EtcdOptions{Endpoints: []string{srv.Endpoint()}, Prefix: "/haroll/cli", TLS: srv.ClientTLS(), LockTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	held := holdLock(t, store)

	out, err = runRollout(t, "lock", "status", "--config", p, "--insecure")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice@deploy-1", "20260101T000000Z-beef", "hotfix 42", "app:v1", fmt.Sprint(held.Info().Token), "unless its holder renews it", "/haroll/cli/lock"} {
		if !strings.Contains(out, want) {
			t.Errorf("status %q lacks %q", out, want)
		}
	}
	out, err = runRollout(t, "lock", "status", "--config", p, "--insecure", "-o", "json")
	var js struct {
		Held bool             `json:"held"`
		Lock rollout.LockInfo `json:"lock"`
	}
	if err != nil || json.Unmarshal([]byte(out), &js) != nil || !js.Held || js.Lock.Token != held.Info().Token || js.Lock.Expires.IsZero() {
		t.Errorf("status -o json: %q, %v", out, err)
	}

	// A rollout from this machine is refused, naming the holder.
	_, err = runRollout(t, "--config", p, "--insecure", "--image", "app:v2")
	if !errors.Is(err, rollout.ErrLocked) || !strings.Contains(err.Error(), "alice@deploy-1") {
		t.Errorf("rollout while held: %v, want the holder named", err)
	}

	out, err = runRollout(t, "lock", "release", "--config", p, "--insecure")
	if err != nil || !strings.Contains(out, "released the fleet lock of rollout 20260101T000000Z-beef held by alice@deploy-1") {
		t.Errorf("release: %q, %v", out, err)
	}
	if err := held.Check(t.Context()); !errors.Is(err, rollout.ErrLockLost) {
		t.Errorf("the released holder's check: %v, want ErrLockLost", err)
	}
	out, err = runRollout(t, "lock", "release", "--config", p, "--insecure")
	if err != nil || !strings.Contains(out, "was free") {
		t.Errorf("release of a free lock: %q, %v", out, err)
	}
	// promote from this machine: the rollout's state is looked for in
	// etcd.
	_, err = runRollout(t, "promote", "--config", p, "--insecure")
	if !errors.Is(err, rollout.ErrNoCanaryWaiting) || !strings.Contains(err.Error(), "etcd "+srv.Endpoint()) {
		t.Errorf("promote with an empty etcd: %v, want no canary waiting, in etcd", err)
	}
	// --resume from this machine, with no state file here: nothing to
	// resume in etcd, said so.
	_, err = runRollout(t, "--config", p, "--insecure", "--resume")
	if !errors.Is(err, rollout.ErrNothingToResume) || !strings.Contains(err.Error(), "etcd") {
		t.Errorf("resume with an empty etcd: %v", err)
	}
}
