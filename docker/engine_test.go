package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/integration/harness"
)

// Tests against the real engine label everything they create with harness.TestLabel and name it
// with runID, and remove it in t.Cleanup (images: in TestMain).

var runID = randomHex(4)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testImage tags, built on first use.
const (
	imageV1        = "v1"       // VERSION=v1, HEALTHCHECK
	imageV2        = "v2"       // VERSION=v2, HEALTHCHECK
	imageBroken    = "broken"   // BROKEN=1, HEALTHCHECK: never healthy
	imageNoHealthV = "nohealth" // VERSION=plain, no HEALTHCHECK
	imageRepo      = "haroll-dockertest"
)

var images struct {
	mu    sync.Mutex
	built map[string]string // tag -> ID
}

func TestMain(m *testing.M) {
	code := m.Run()
	images.mu.Lock()
	for tag := range images.built {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := harness.RemoveImage(ctx, tag); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
		cancel()
	}
	images.mu.Unlock()
	os.Exit(code)
}

// engine connects to the local daemon; it skips the test when there is none, unless CI is set.
func engine(t *testing.T) *docker.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := docker.New(ctx, "", 0)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Docker engine (set CI to make this fatal): %v", err)
		}
		t.Fatalf("CI is set but the Docker engine is unreachable: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawAPI is the SDK client, for what package docker does not offer (creating from scratch, networks).
func rawAPI(t *testing.T) *client.Client {
	t.Helper()
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	return api
}

// testImage returns the tag of one of the test images, building it on first use.
func testImage(t *testing.T, which string) string {
	t.Helper()
	tag := fmt.Sprintf("%s-%s:%s", imageRepo, runID, which)
	images.mu.Lock()
	defer images.mu.Unlock()
	if _, ok := images.built[tag]; ok {
		return tag
	}
	opts := harness.ImageOptions{Tag: tag, Healthcheck: true, Labels: map[string]string{"org.example.flavour": which}}
	switch which {
	case imageV1, imageV2:
		opts.Env = map[string]string{"VERSION": which}
	case imageBroken:
		opts.Env = map[string]string{"VERSION": which, "BROKEN": "1"}
	case imageNoHealthV:
		opts.Env = map[string]string{"VERSION": "plain"}
		opts.Healthcheck = false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := harness.BuildTestApp(ctx, opts)
	if err != nil {
		t.Fatalf("build test image: %v", err)
	}
	if images.built == nil {
		images.built = map[string]string{}
	}
	images.built[tag] = id
	return tag
}

// uniqueName is a container or network name no one else uses.
func uniqueName(t *testing.T, what string) string {
	t.Helper()
	return fmt.Sprintf("haroll-test-%s-%s-%s", runID, what, randomHex(3))
}

// removeContainerLater removes the container (by name or ID) when the test ends.
func removeContainerLater(t *testing.T, api *client.Client, ref string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = api.ContainerRemove(ctx, ref, container.RemoveOptions{Force: true, RemoveVolumes: true})
	})
}

// createContainer creates (does not start) a labelled test container and removes it at cleanup.
func createContainer(t *testing.T, api *client.Client, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) string {
	t.Helper()
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[harness.TestLabel] = "1"
	if hc == nil {
		hc = &container.HostConfig{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := api.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	removeContainerLater(t, api, resp.ID)
	return resp.ID
}

// createNetwork creates a labelled bridge network and removes it at cleanup (after the containers,
// whose cleanups were registered later and so run first).
func createNetwork(t *testing.T, api *client.Client) string {
	t.Helper()
	name := uniqueName(t, "net")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := api.NetworkCreate(ctx, name, network.CreateOptions{Labels: map[string]string{harness.TestLabel: "1"}}); err != nil {
		t.Fatalf("create network: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = api.NetworkRemove(ctx, name)
	})
	return name
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
