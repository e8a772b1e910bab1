package docker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/haroll/haroll/docker"
)

// startContainer creates and starts a test container from the image which.
func startContainer(t *testing.T, c *docker.Client, cfg *container.Config) string {
	t.Helper()
	id := createContainer(t, rawAPI(t), uniqueName(t, "health"), cfg, nil, nil)
	if err := c.Start(testContext(t, 20*time.Second), id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestWaitHealthyReturnsOnceTheHealthcheckPasses(t *testing.T) {
	t.Parallel()
	c := engine(t)
	id := startContainer(t, c, &container.Config{Image: testImage(t, imageV1), Env: []string{"WARMUP=700ms"}})

	if err := c.WaitHealthy(testContext(t, 20*time.Second), id, 0); err != nil {
		t.Fatal(err)
	}
	got, err := c.Inspect(testContext(t, 5*time.Second), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Health != "healthy" || !got.HasHealthcheck {
		t.Fatalf("after WaitHealthy, Health = %q, HasHealthcheck = %v", got.Health, got.HasHealthcheck)
	}
}

// startIntervals are WaitHealthy's with and without its own runs of the healthcheck: Docker's
// reports decide failures either way.
var startIntervals = []time.Duration{0, 100 * time.Millisecond}

func TestWaitHealthyReportsDockersVerdictOnABrokenOrDyingApp(t *testing.T) {
	t.Parallel()
	c := engine(t)
	for _, tc := range []struct {
		name string
		cfg  func() *container.Config
		want error
		text string // in the error: the last check's output, the exit code
	}{
		{"a broken app is ErrUnhealthy", func() *container.Config { return &container.Config{Image: testImage(t, imageBroken)} }, docker.ErrUnhealthy, "503"},
		{"an app that dies is ErrExited", func() *container.Config {
			return &container.Config{Image: testImage(t, imageV1), Env: []string{"PORT=not-a-number"}}
		}, docker.ErrExited, "exit code 2"},
	} {
		for _, every := range startIntervals {
			t.Run(tc.name+", start interval "+every.String(), func(t *testing.T) {
				t.Parallel()
				id := startContainer(t, c, tc.cfg())

				err := c.WaitHealthy(testContext(t, 20*time.Second), id, every)
				if !errors.Is(err, tc.want) {
					t.Fatalf("WaitHealthy: got %v, want %v", err, tc.want)
				}
				if !strings.Contains(err.Error(), tc.text) {
					t.Errorf("error %q should say %q", err, tc.text)
				}
			})
		}
	}
}

func TestWaitHealthyReturnsAsSoonAsAContainerWithoutHealthcheckRuns(t *testing.T) {
	t.Parallel()
	c := engine(t)
	for _, tc := range []struct {
		name string
		cfg  *container.Config
	}{
		{"image without HEALTHCHECK", &container.Config{Image: testImage(t, imageNoHealthV)}},
		{"healthcheck disabled at run", &container.Config{Image: testImage(t, imageBroken), Healthcheck: &container.HealthConfig{Test: []string{"NONE"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := startContainer(t, c, tc.cfg)
			start := time.Now()
			if err := c.WaitHealthy(testContext(t, 10*time.Second), id, 0); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("WaitHealthy took %v for a container without healthcheck", d)
			}
			got, err := c.Inspect(testContext(t, 5*time.Second), id)
			if err != nil {
				t.Fatal(err)
			}
			if got.HasHealthcheck || got.Health != "" {
				t.Errorf("Inspect: HasHealthcheck = %v, Health = %q; want false, \"\"", got.HasHealthcheck, got.Health)
			}
		})
	}
}

func TestWaitHealthyGivesUpWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	c := engine(t)
	id := startContainer(t, c, &container.Config{Image: testImage(t, imageV1), Env: []string{"WARMUP=1h"}})

	err := c.WaitHealthy(testContext(t, 300*time.Millisecond), id, 0)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("WaitHealthy: got %v, want the context's deadline", err)
	}
}

// neverCheckedByDocker is a healthcheck with the image's test whose first run by Docker is an hour
// away: only WaitHealthy's own runs can find the container healthy in a test.
func neverCheckedByDocker(test ...string) *container.HealthConfig {
	return &container.HealthConfig{Test: test, Interval: time.Hour}
}

func TestWaitHealthyRunsTheHealthcheckItselfLongBeforeDockersFirstCheck(t *testing.T) {
	t.Parallel()
	c := engine(t)
	for _, tc := range []struct {
		name string
		cfg  *container.Config
	}{
		{"the image's CMD test", &container.Config{Image: testImage(t, imageV1), Env: []string{"WARMUP=500ms"}, Healthcheck: neverCheckedByDocker()}},
		{"a CMD-SHELL test run by the container's SHELL", &container.Config{Image: testImage(t, imageV1), Env: []string{"WARMUP=500ms"},
			Shell: []string{"/app"}, Healthcheck: neverCheckedByDocker("CMD-SHELL", "-check")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := startContainer(t, c, tc.cfg)
			start := time.Now()
			if err := c.WaitHealthy(testContext(t, 20*time.Second), id, 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < 500*time.Millisecond {
				t.Errorf("WaitHealthy returned after %v, before the app's warm-up (500ms) was over", d)
			}
			got, err := c.Inspect(testContext(t, 5*time.Second), id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Health != "starting" || !got.Running {
				t.Fatalf("after WaitHealthy, Health = %q, Running = %v; want starting (Docker's own check has not run), running", got.Health, got.Running)
			}
		})
	}
}

func TestWaitHealthyWithoutStartIntervalWaitsForDockersOwnCheck(t *testing.T) {
	t.Parallel()
	c := engine(t)
	id := startContainer(t, c, &container.Config{Image: testImage(t, imageV1), Healthcheck: neverCheckedByDocker()})

	err := c.WaitHealthy(testContext(t, 2*time.Second), id, 0)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("WaitHealthy: got %v, want the context's deadline with Docker's status starting", err)
	}
}

func TestWaitHealthyCountsAFailingOrUnstartableRunAsNotYet(t *testing.T) {
	t.Parallel()
	c := engine(t)
	for _, tc := range []struct {
		name string
		cfg  *container.Config
		how  string // how haroll's last run ended, in the error
	}{
		{"a check that fails", &container.Config{Image: testImage(t, imageBroken), Healthcheck: neverCheckedByDocker()}, "exit code 1"},
		{"a CMD-SHELL check in an image without /bin/sh", &container.Config{Image: testImage(t, imageV1),
			Healthcheck: neverCheckedByDocker("CMD-SHELL", "/app -check")}, "did not start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := startContainer(t, c, tc.cfg)
			err := c.WaitHealthy(testContext(t, 2*time.Second), id, 100*time.Millisecond)
			if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
				t.Fatalf("WaitHealthy: got %v, want the context's deadline", err)
			}
			if want := "haroll's last run of the healthcheck: " + tc.how; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q should say %q", err, want)
			}
		})
	}
}
