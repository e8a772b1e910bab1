package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
)

var (
	harollBin string
	images    harness.Versions
	// skipReason is set when Docker or HAProxy is missing outside CI.
	skipReason string
)

// app is how the test app behaves: a real boot delay and warm-up, so a
// replacement that gives traffic back early loses requests.
var app = harness.AppProfile{BootDelay: 400 * time.Millisecond, Warmup: 300 * time.Millisecond, LatencyMax: 20 * time.Millisecond}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		skipReason = "integration tests do not run with -short"
		return m.Run()
	}
	if missing := missingDeps(); missing != "" {
		if os.Getenv("CI") != "" {
			fmt.Fprintf(os.Stderr, "integration: %s, and CI is set: failing (run .ci/deps)\n", missing)
			return 1
		}
		skipReason = missing + " (CI unset: skipping integration tests)"
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "haroll-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if harollBin, err = harness.BuildHaroll(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if images, err = harness.BuildVersions(ctx, "haroll-it-app", app); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	version, err := harness.HAProxyVersion()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "integration: %s\n", version)
	return m.Run()
}

func missingDeps() string {
	if _, err := harness.FindHAProxy(); err != nil {
		return err.Error()
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		return "the Docker engine does not answer"
	}
	return ""
}

func requireDeps(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// Parallel cases: the tests, and the cases of a test, that each start a host
// or a fleet of their own and spend their time waiting (a drain held by
// 3-second requests, a boot or a health timeout, an outage, a stalled pull, a
// container's shutdown grace, a rollout's batches) call t.Parallel, so that
// go test runs two of them at once (make test passes -parallel 2): the cases
// beside each other within their test, the tests after every serial one.
// Measured on CI's 2 cores, two of them together leave about half the CPU
// idle, and every assertion stays the test's own: its host or fleet, its
// load, its haroll. Tests that compare a measurement of the machine (a plain
// reload's or restart's cost, a pid namespace's processes), restart a
// Docker daemon, or read which of two near-simultaneous events came first
// (a coordinator's step timeout against the agent's reply to it) stay
// serial.
