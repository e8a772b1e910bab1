package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

func TestTheDockerfileSharesItsFixedStepsAndEndsWithTheVariableOnes(t *testing.T) {
	got := dockerfile(ImageOptions{
		Tag:         "x:1",
		Env:         map[string]string{"VERSION": "v2", "BOOT_DELAY": "1s"},
		Healthcheck: true,
		Labels:      map[string]string{"a": "b c"},
	})
	want := `FROM scratch
COPY app /app
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app"]
HEALTHCHECK --interval=2s --timeout=5s --retries=3 CMD ["/app","-check"]
LABEL "a"="b c" "haroll.test"="1"
ENV "BOOT_DELAY"="1s" "VERSION"="v2"
`
	if got != want {
		t.Fatalf("dockerfile =\n%s\nwant\n%s", got, want)
	}
}

func TestBuildTestAppBuildsARunnableImageWithItsOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	api := dockerOrSkip(t, ctx)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "haroll-harnesstest-" + hex.EncodeToString(b) + ":v7"
	t.Cleanup(func() {
		if err := RemoveImage(context.Background(), tag); err != nil {
			t.Error(err)
		}
	})

	id, err := BuildTestApp(ctx, ImageOptions{Tag: tag, Env: map[string]string{"VERSION": "v7"}, Healthcheck: true})
	if err != nil {
		t.Fatal(err)
	}
	img, err := api.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg := img.Config
	if img.ID != id || cfg.Labels[TestLabel] != "1" || !slices.Contains(cfg.Env, "VERSION=v7") {
		t.Errorf("image %s: ID %s, labels %v, env %q", tag, img.ID, cfg.Labels, cfg.Env)
	}
	if h := cfg.Healthcheck; h == nil || h.Interval != DefaultHealthInterval || !slices.Equal(h.Test, []string{"CMD", "/app", "-check"}) {
		t.Errorf("Healthcheck = %+v", cfg.Healthcheck)
	}
	if err := RemoveImage(ctx, tag); err != nil {
		t.Fatal(err)
	}
	if err := RemoveImage(ctx, tag); err != nil {
		t.Fatalf("removing a removed image: %v", err)
	}
}

// dockerOrSkip returns an SDK client; without a daemon it skips, unless CI is set.
func dockerOrSkip(t *testing.T, ctx context.Context) *client.Client {
	t.Helper()
	api, err := newDockerClient()
	if err == nil {
		_, err = api.Ping(ctx)
	}
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Docker engine (set CI to make this fatal): %v", err)
		}
		t.Fatalf("CI is set but the Docker engine is unreachable: %v", err)
	}
	t.Cleanup(func() { api.Close() })
	return api
}
