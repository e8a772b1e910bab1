package docker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/haroll/haroll/docker"
)

func TestInspectOfAnUnknownContainerIsErrContainerNotFound(t *testing.T) {
	c := engine(t)
	_, err := c.Inspect(testContext(t, 10*time.Second), uniqueName(t, "missing"))
	if !errors.Is(err, docker.ErrContainerNotFound) {
		t.Fatalf("Inspect: got %v, want ErrContainerNotFound", err)
	}
}

func TestAContainerCanBeStoppedRenamedStartedAndRemoved(t *testing.T) {
	c, api := engine(t), rawAPI(t)
	ctx := testContext(t, 40*time.Second)
	name := uniqueName(t, "lifecycle")
	timeout := 5
	id := createContainer(t, api, name, &container.Config{Image: testImage(t, imageV1), StopTimeout: &timeout}, nil, nil)

	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	got, err := c.Inspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Running || got.Name != name || got.ID != id || !got.HasHealthcheck || got.StopTimeout == nil || *got.StopTimeout != timeout {
		t.Fatalf("after Start, Inspect = %+v", got)
	}

	// A SIGTERM that lands before the app has set up its handler kills it
	// with exit code 2: wait until it serves.
	if err := c.WaitHealthy(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, id); err != nil {
		t.Fatalf("stopping a stopped container: %v", err)
	}
	raw, err := api.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if raw.State.Running || raw.State.ExitCode != 0 {
		t.Fatalf("after Stop: running=%v exit code %d, want a clean exit on SIGTERM", raw.State.Running, raw.State.ExitCode)
	}

	renamed := name + "-old"
	if err := c.Rename(ctx, id, renamed); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, name); !errors.Is(err, docker.ErrContainerNotFound) {
		t.Fatalf("old name after Rename: got %v, want ErrContainerNotFound", err)
	}
	if err := c.Start(ctx, renamed); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, renamed, 0); err != nil {
		t.Fatal(err)
	}

	if err := c.Remove(ctx, renamed); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, renamed); err != nil {
		t.Fatalf("removing a removed container: %v", err)
	}
	if _, err := c.Inspect(ctx, id); !errors.Is(err, docker.ErrContainerNotFound) {
		t.Fatalf("after Remove: got %v, want ErrContainerNotFound", err)
	}
	if err := c.Stop(ctx, id); !errors.Is(err, docker.ErrContainerNotFound) {
		t.Fatalf("Stop after Remove: got %v, want ErrContainerNotFound", err)
	}
}

func TestRenamingOntoATakenNameIsErrNameConflict(t *testing.T) {
	c, api := engine(t), rawAPI(t)
	ctx := testContext(t, 20*time.Second)
	a := createContainer(t, api, uniqueName(t, "a"), &container.Config{Image: testImage(t, imageV1)}, nil, nil)
	bName := uniqueName(t, "b")
	createContainer(t, api, bName, &container.Config{Image: testImage(t, imageV1)}, nil, nil)

	if err := c.Rename(ctx, a, bName); !errors.Is(err, docker.ErrNameConflict) {
		t.Fatalf("Rename: got %v, want ErrNameConflict", err)
	}
}
