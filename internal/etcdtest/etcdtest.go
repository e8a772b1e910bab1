// Package etcdtest runs a real etcd for tests: one member on free loopback
// ports with its own data directory, optionally with mutual TLS, which a
// test can stop and start again on the same data (etcd down mid-rollout).
// It kills only the process it started. Without an etcd binary the test is
// skipped, or fails when CI is set (.ci/deps installs Debian's etcd-server).
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/haroll/haroll/internal/certs"
	"github.com/haroll/haroll/internal/tlsconf"
)

// Binary is the etcd the tests run: $HAROLL_ETCD_BIN, else etcd on PATH,
// else Debian's /usr/bin/etcd.
func Binary() string {
	if b := os.Getenv("HAROLL_ETCD_BIN"); b != "" {
		return b
	}
	if b, err := exec.LookPath("etcd"); err == nil {
		return b
	}
	return "/usr/bin/etcd"
}

// Options of a Server.
type Options struct {
	// TLS serves clients with mutual TLS: a CA, a server certificate for
	// 127.0.0.1 and a client certificate are made under the test's
	// temporary directory (ClientCert, ClientKey, CA).
	TLS bool
}

// Server is a running etcd.
type Server struct {
	t       testing.TB
	dir     string
	client  string // client URL
	peer    string
	opts    Options
	logPath string

	// The files of the mutual TLS, when Options.TLS.
	CA, ClientCert, ClientKey string

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when cmd's process has been waited for.
	exited chan struct{}
}

// Start runs an etcd for t until t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("etcd %s: %v: CI is set, so etcd must be installed (.ci/deps installs Debian's etcd-server)", bin, err)
		}
		t.Skipf("etcd %s: %v (install etcd-server, or run .ci/deps)", bin, err)
	}
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, opts: opts, logPath: filepath.Join(dir, "etcd.log")}
	scheme := "http"
	if opts.TLS {
		scheme = "https"
		s.makeCerts()
	}
	s.client = fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
	s.peer = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	t.Cleanup(func() { s.kill() })
	s.Start()
	return s
}

// Endpoint is the client URL.
func (s *Server) Endpoint() string { return s.client }

// ClientTLS is the client's mutual TLS, nil without Options.TLS.
func (s *Server) ClientTLS() *tls.Config {
	s.t.Helper()
	if !s.opts.TLS {
		return nil
	}
	tc, err := tlsconf.Client(s.ClientCert, s.ClientKey, s.CA)
	if err != nil {
		s.t.Fatal(err)
	}
	return tc
}

// Start starts etcd (again, on the same data and ports) and waits until it
// answers.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("etcdtest: Start while etcd runs")
	}
	args := []string{
		"--name", "haroll-test", "--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", s.client, "--advertise-client-urls", s.client,
		"--listen-peer-urls", s.peer, "--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "haroll-test=" + s.peer, "--initial-cluster-state", "new",
	}
	if s.opts.TLS {
		dir := filepath.Join(s.dir, "tls")
		args = append(args, "--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
			"--trusted-ca-file", s.CA, "--client-cert-auth")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(Binary(), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		s.t.Fatalf("etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	if err := s.waitReady(exited); err != nil {
		s.t.Fatalf("etcd did not answer on %s: %v; its log %s:\n%s", s.client, err, s.logPath, tail(s.logPath))
	}
}

// waitReady waits until etcd answers a read.
func (s *Server) waitReady(exited <-chan struct{}) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.client}, TLS: s.ClientTLS(), DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = cli.Get(ctx, "/etcdtest-ready")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("etcd exited: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops etcd (SIGTERM, then SIGKILL after 10s) and waits until it has
// exited; Start runs it again on the same data.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// kill ends etcd at the test's end.
func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Client is a client of the server, closed when the test ends.
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.client}, TLS: s.ClientTLS(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// makeCerts makes the CA, the server's certificate (127.0.0.1) and a
// client's, with the repo's own certificate code (`haroll certs`).
func (s *Server) makeCerts() {
	s.t.Helper()
	dir := filepath.Join(s.dir, "tls")
	ca := filepath.Join(dir, "ca")
	if err := certs.NewCA(ca, "etcdtest-CA", 24*time.Hour); err != nil {
		s.t.Fatal(err)
	}
	if err := certs.Issue(ca, dir, "server", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, certs.Both, 24*time.Hour); err != nil {
		s.t.Fatal(err)
	}
	if err := certs.Issue(ca, dir, "client", nil, nil, certs.Client, 24*time.Hour); err != nil {
		s.t.Fatal(err)
	}
	s.CA = filepath.Join(ca, certs.CACertFile)
	s.ClientCert, s.ClientKey = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
}

// freePort is a loopback TCP port free when asked.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail is the end of the file at path, for a failure's message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
