package harness

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// AppProfile is how the test app behaves in the images BuildVersions makes.
type AppProfile struct {
	BootDelay  time.Duration // before it listens
	Warmup     time.Duration // /health answers 503 this long after listening
	LatencyMax time.Duration // random latency of each request
}

// Versions are the image references of one test app build.
type Versions struct {
	V1, V2 string // V2 also has a Docker HEALTHCHECK; V1 has none
	Broken string // listens, but never becomes ready
	// Faulty passes every health check but answers 500 to FaultyErrorRate
	// of the requests to /.
	Faulty string
}

// FaultyErrorRate is the share of requests the Faulty version fails.
const FaultyErrorRate = 0.3

// BuildVersions builds repo:v1, repo:v2 and repo:broken from the test app.
func BuildVersions(ctx context.Context, repo string, p AppProfile) (Versions, error) {
	v := Versions{V1: repo + ":v1", V2: repo + ":v2", Broken: repo + ":broken", Faulty: repo + ":faulty"}
	env := func(version string) map[string]string {
		return map[string]string{"VERSION": version, "BOOT_DELAY": p.BootDelay.String(),
			"WARMUP": p.Warmup.String(), "LATENCY_MAX": p.LatencyMax.String()}
	}
	broken := env("broken")
	broken["BROKEN"] = "1"
	faulty := env("faulty")
	faulty["ERROR_RATE"] = strconv.FormatFloat(FaultyErrorRate, 'f', -1, 64)
	for _, o := range []ImageOptions{
		{Tag: v.V1, Env: env("v1")},
		{Tag: v.V2, Env: env("v2"), Healthcheck: true},
		{Tag: v.Broken, Env: broken},
		{Tag: v.Faulty, Env: faulty, Healthcheck: true},
	} {
		if _, err := BuildTestApp(ctx, o); err != nil {
			return v, err
		}
	}
	return v, nil
}

// BuildHaroll compiles cmd/haroll into dir and returns the binary's path.
func BuildHaroll(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "haroll")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/haroll")
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build cmd/haroll: %w: %s", err, bytes.TrimSpace(output))
	}
	return out, nil
}
