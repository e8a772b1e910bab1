package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Etcd is a one-member etcd server (the machine's /usr/bin/etcd, Debian's
// etcd-server) on free loopback ports, plain HTTP, with its data in a
// directory of its own, that a test stops and starts again on the same data
// and ports ("etcd went away").
type Etcd struct {
	// Endpoint is its client URL, http://127.0.0.1:port.
	Endpoint string

	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// EtcdMissing says why an etcd server cannot run here ("" when it can).
func EtcdMissing() string {
	if _, err := exec.LookPath("etcd"); err != nil {
		return "no etcd binary on PATH (Debian's etcd-server; .ci/deps installs it)"
	}
	return ""
}

// StartEtcd starts etcd with its data under dir and waits until it answers.
func StartEtcd(ctx context.Context, dir string) (*Etcd, error) {
	client, err := FreePort()
	if err != nil {
		return nil, err
	}
	peer, err := FreePort()
	if err != nil {
		return nil, err
	}
	e := &Etcd{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", client), dir: dir}
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	e.args = []string{
		"--name", "it", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", e.Endpoint, "--advertise-client-urls", e.Endpoint,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "it=" + peerURL, "--initial-cluster-state", "new",
		"--log-level", "warn", "--logger", "zap",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return e, e.Start(ctx)
}

// Start starts the server (again, after Stop) and waits up to 30 s until
// its /health says true.
func (e *Etcd) Start(ctx context.Context) error {
	if e.cmd != nil {
		return errors.New("etcd: already running")
	}
	logf, err := os.OpenFile(e.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("etcd", e.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	e.cmd, e.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(e.done)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if e.healthy(ctx) {
			return nil
		}
		select {
		case <-e.done:
			e.cmd = nil
			return fmt.Errorf("etcd exited at start: %s", e.logTail())
		case <-ctx.Done():
			_ = e.Stop()
			return fmt.Errorf("etcd does not answer on %s: %w: %s", e.Endpoint, ctx.Err(), e.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *Etcd) healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.Endpoint+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode == http.StatusOK && strings.Contains(b.String(), `"true"`)
}

// Stop ends the server (SIGTERM, SIGKILL after 10 s); its data stays.
func (e *Etcd) Stop() error {
	if e.cmd == nil {
		return nil
	}
	defer func() { e.cmd = nil }()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
		return errors.New("etcd did not exit within 10s of SIGTERM: killed")
	}
}

// LogPath is the server's log, across its restarts.
func (e *Etcd) LogPath() string { return filepath.Join(e.dir, "etcd.log") }

func (e *Etcd) logTail() string {
	b, _ := os.ReadFile(e.LogPath())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
