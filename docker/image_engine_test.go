package docker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/docker"
)

func TestEnsureImageReturnsTheIDOfALocalImage(t *testing.T) {
	c, api := engine(t), rawAPI(t)
	ctx := testContext(t, 20*time.Second)
	tag := testImage(t, imageV1)
	want, err := api.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.EnsureImage(ctx, tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != want.ID {
		t.Fatalf("EnsureImage(%s) = %s, want %s", tag, got, want.ID)
	}
}

func TestEnsureImageOfAnImageNoRegistryHasIsErrImageNotFound(t *testing.T) {
	c := engine(t)
	// Nothing listens on port 1; the daemon treats 127.0.0.0/8 registries as insecure and fails fast.
	ref := "127.0.0.1:1/haroll-missing-" + runID + ":none"
	_, err := c.EnsureImage(testContext(t, 30*time.Second), ref, nil)
	if !errors.Is(err, docker.ErrImageNotFound) {
		t.Fatalf("EnsureImage: got %v, want ErrImageNotFound", err)
	}
	if !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "docker load") {
		t.Fatalf("error %q should name the image and say what to do", err)
	}
}
