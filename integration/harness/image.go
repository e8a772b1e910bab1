package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// TestLabel marks every image (and, by convention, container and network) that haroll's tests create,
// so that cleanup can find them without touching anything else.
const TestLabel = "haroll.test"

// DefaultHealthInterval is the HEALTHCHECK interval of test images. Docker 20.10 accepts intervals down
// to 1ms, but every probe is an exec in the container, and on 2 cores with fuse-overlayfs a dozen
// containers checked every 500ms made the execs themselves time out. Docker runs the first check one
// interval after the start, so 2s still reports the test app (ready after 1.5 s) healthy at 2 s.
const DefaultHealthInterval = 2 * time.Second

// healthTimeout bounds one HEALTHCHECK exec of a test image.
const healthTimeout = 5 * time.Second

// ImageOptions describe a test app image.
type ImageOptions struct {
	Tag string // e.g. "haroll-testapp:v1"
	// Env is baked in as ENV: VERSION, PORT, BOOT_DELAY, WARMUP, LATENCY_MAX, BROKEN, ERROR_RATE.
	Env map[string]string
	// Healthcheck adds HEALTHCHECK --interval=<HealthInterval> --timeout=5s --retries=3 CMD ["/app","-check"].
	Healthcheck bool
	// HealthInterval overrides DefaultHealthInterval when Healthcheck is set.
	HealthInterval time.Duration
	// Labels are added to the image next to TestLabel=1.
	Labels map[string]string
}

// BuildTestApp compiles integration/testapp (once per process, static, CGO_ENABLED=0) and builds a
// FROM scratch image from it with the legacy builder, tagged opts.Tag and labelled TestLabel=1. The
// app listens on 8080 (EXPOSE 8080) unless Env sets PORT. It returns the image ID (sha256:...).
// It is safe for concurrent use. It needs the go toolchain and the module source tree.
func BuildTestApp(ctx context.Context, opts ImageOptions) (string, error) {
	if opts.Tag == "" {
		return "", errors.New("build test app image: ImageOptions.Tag is empty")
	}
	bin, err := testAppBinary(ctx)
	if err != nil {
		return "", err
	}
	buildCtx, err := buildContext(dockerfile(opts), bin)
	if err != nil {
		return "", fmt.Errorf("build test app image %s: %w", opts.Tag, err)
	}
	cli, err := newDockerClient()
	if err != nil {
		return "", err
	}
	defer cli.Close()

	resp, err := cli.ImageBuild(ctx, bytes.NewReader(buildCtx), build.ImageBuildOptions{
		Tags:        []string{opts.Tag},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("build test app image %s: %w", opts.Tag, err)
	}
	defer resp.Body.Close()
	if err := readBuildStream(resp.Body); err != nil {
		return "", fmt.Errorf("build test app image %s: %w", opts.Tag, err)
	}
	inspect, err := cli.ImageInspect(ctx, opts.Tag)
	if err != nil {
		return "", fmt.Errorf("build test app image %s: inspect the result: %w", opts.Tag, err)
	}
	return inspect.ID, nil
}

// RemoveImage removes the image tagged tag (forcefully, so that stopped test containers do not keep
// it). An image that does not exist is not an error.
func RemoveImage(ctx context.Context, tag string) error {
	cli, err := newDockerClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", tag, err)
	}
	return nil
}

func newDockerClient() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// dockerfile renders the Dockerfile of opts. The legacy builder runs an intermediate container for
// every instruction (about a second each on a small host), so the instructions shared by all test
// images come first and hit the build cache, and the variable ones are one LABEL and one ENV line,
// sorted so that identical options give identical images.
func dockerfile(opts ImageOptions) string {
	var b strings.Builder
	port := "8080"
	if p, ok := opts.Env["PORT"]; ok {
		port = p
	}
	fmt.Fprintf(&b, "FROM scratch\nCOPY app /app\nEXPOSE %s\nSTOPSIGNAL SIGTERM\nENTRYPOINT [\"/app\"]\n", port)
	if opts.Healthcheck {
		interval := opts.HealthInterval
		if interval <= 0 {
			interval = DefaultHealthInterval
		}
		fmt.Fprintf(&b, "HEALTHCHECK --interval=%s --timeout=%s --retries=3 CMD [\"/app\",\"-check\"]\n", interval, healthTimeout)
	}
	labels := map[string]string{TestLabel: "1"}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	b.WriteString("LABEL" + keyValues(labels) + "\n")
	if len(opts.Env) > 0 {
		b.WriteString("ENV" + keyValues(opts.Env) + "\n")
	}
	return b.String()
}

// keyValues renders m as ` "k"="v" ...` in key order.
func keyValues(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", strconv.Quote(k), strconv.Quote(m[k]))
	}
	return b.String()
}

// buildContext is the tar stream sent to the daemon: the Dockerfile and the binary.
func buildContext(dockerfile string, bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(dockerfile)},
		{"app", 0o755, bin},
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readBuildStream drains the daemon's JSON message stream and returns the build error it reports, if
// any, with the tail of the build output.
func readBuildStream(r io.Reader) error {
	var out bytes.Buffer
	if err := jsonmessage.DisplayJSONMessagesStream(r, &out, 0, false, nil); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) > 10 {
			lines = lines[len(lines)-10:]
		}
		return fmt.Errorf("%w (build output: %s)", err, strings.Join(lines, " | "))
	}
	return nil
}

var testApp struct {
	mu  sync.Mutex
	bin []byte
}

// testAppBinary compiles integration/testapp once per process and keeps the binary in memory, so no
// file outlives the build. A failed compilation (a cancelled ctx, say) is not cached.
func testAppBinary(ctx context.Context) ([]byte, error) {
	testApp.mu.Lock()
	defer testApp.mu.Unlock()
	if testApp.bin != nil {
		return testApp.bin, nil
	}
	bin, err := compileTestApp(ctx)
	if err != nil {
		return nil, err
	}
	testApp.bin = bin
	return bin, nil
}

func compileTestApp(ctx context.Context) ([]byte, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, fmt.Errorf("compile integration/testapp: %w", err)
	}
	dir, err := os.MkdirTemp("", "haroll-testapp-")
	if err != nil {
		return nil, fmt.Errorf("compile integration/testapp: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "app")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./integration/testapp")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if output, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compile integration/testapp in %s: %w: %s", root, err, bytes.TrimSpace(output))
	}
	return os.ReadFile(out)
}

// moduleRoot finds the haroll module root: from this file's location when the source is at hand,
// else from `go env GOMOD` in the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if _, err := os.Stat(filepath.Join(root, "integration", "testapp", "main.go")); err == nil {
			return root, nil
		}
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root with `go env GOMOD`: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find the module root: not inside the haroll module (run from its source tree)")
	}
	return filepath.Dir(gomod), nil
}
