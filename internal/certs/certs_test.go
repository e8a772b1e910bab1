package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/certs"
	"github.com/haroll/haroll/internal/tlsconf"
)

const day = 24 * time.Hour

func newCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := certs.NewCA(dir, "haroll-ca", 3650*day); err != nil {
		t.Fatal(err)
	}
	return dir
}

func read(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := certs.ReadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func roots(t *testing.T, caDir string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(read(t, filepath.Join(caDir, certs.CACertFile)))
	return pool
}

func TestTheCAIsSelfSignedAndItsKeyIsPrivate(t *testing.T) {
	dir := newCA(t)
	ca := read(t, filepath.Join(dir, certs.CACertFile))
	if !ca.IsCA || ca.Subject.CommonName != "haroll-ca" {
		t.Errorf("IsCA=%v CN=%q", ca.IsCA, ca.Subject.CommonName)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if d := time.Until(ca.NotAfter); d < 3649*day || d > 3651*day {
		t.Errorf("CA valid for %s, want 3650 days", d)
	}
	for file, want := range map[string]fs.FileMode{certs.CAKeyFile: 0o600, certs.CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", file, fi.Mode().Perm(), want)
		}
	}
	if _, _, err := certs.LoadCA(dir); err != nil {
		t.Errorf("LoadCA: %v", err)
	}
}

func TestAnAgentCertificateVerifiesForServerAuthOnItsNamesOnly(t *testing.T) {
	caDir := newCA(t)
	out := t.TempDir()
	err := certs.Issue(caDir, out, "agent-1", []string{"agent-1.example.com"}, []net.IP{net.ParseIP("10.0.0.5")}, certs.Server, 825*day)
	if err != nil {
		t.Fatal(err)
	}
	leaf := read(t, filepath.Join(out, "agent-1.crt"))
	opts := x509.VerifyOptions{Roots: roots(t, caDir), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, host := range []string{"agent-1.example.com", "10.0.0.5"} {
		opts.DNSName = host
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	opts.DNSName = "agent-2.example.com"
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("verified for a host not in its SANs")
	}
	opts.DNSName = ""
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("an agent (server) certificate verified for client auth")
	}
	if fi, err := os.Stat(filepath.Join(out, "agent-1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key: %v, %v", fi.Mode(), err)
	}
}

func TestACoordinatorCertificateVerifiesForClientAuthWithItsNameAsCommonName(t *testing.T) {
	caDir := newCA(t)
	out := t.TempDir()
	if err := certs.Issue(caDir, out, "coordinator", nil, nil, certs.Client, 825*day); err != nil {
		t.Fatal(err)
	}
	leaf := read(t, filepath.Join(out, "coordinator.crt"))
	if leaf.Subject.CommonName != "coordinator" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	opts := x509.VerifyOptions{Roots: roots(t, caDir), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("verify for client auth: %v", err)
	}
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("a coordinator (client) certificate verified for server auth")
	}
}

func TestCertificatesFromThisPackageMakeAWorkingMutualTLSPair(t *testing.T) {
	caDir := newCA(t)
	out := t.TempDir()
	if err := certs.Issue(caDir, out, "agent-1", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, certs.Server, day); err != nil {
		t.Fatal(err)
	}
	if err := certs.Issue(caDir, out, "coordinator", nil, nil, certs.Client, day); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(caDir, certs.CACertFile)
	server, err := tlsconf.Server(filepath.Join(out, "agent-1.crt"), filepath.Join(out, "agent-1.key"), ca, []string{"coordinator"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := tlsconf.Client(filepath.Join(out, "coordinator.crt"), filepath.Join(out, "coordinator.key"), ca)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("ok"))
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q: %v", buf, err)
	}
}

func TestExistingFilesAreKeptUnlessForced(t *testing.T) {
	caDir := newCA(t)
	before, _ := os.ReadFile(filepath.Join(caDir, certs.CAKeyFile))
	err := certs.NewCA(caDir, "haroll-ca", day)
	if !errors.Is(err, certs.ErrExists) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second NewCA: %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(caDir, certs.CACertFile)) {
		t.Errorf("error does not name the file: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(caDir, certs.CAKeyFile)); string(after) != string(before) {
		t.Fatal("CA key changed without force")
	}
	if err := certs.NewCA(caDir, "haroll-ca", day, certs.Force()); err != nil {
		t.Fatalf("forced NewCA: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(caDir, certs.CAKeyFile)); string(after) == string(before) {
		t.Fatal("CA key not replaced with force")
	}

	out := t.TempDir()
	issue := func(opts ...certs.Option) error {
		return certs.Issue(caDir, out, "coordinator", nil, nil, certs.Client, day, opts...)
	}
	if err := issue(); err != nil {
		t.Fatal(err)
	}
	if err := issue(); !errors.Is(err, certs.ErrExists) {
		t.Fatalf("second Issue: %v, want ErrExists", err)
	}
	if err := issue(certs.Force()); err != nil {
		t.Fatalf("forced Issue: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(out, ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestALeafNeverOutlivesItsCA(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "pki")
	if err := certs.NewCA(caDir, "short", 10*day); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := certs.Issue(caDir, out, "coordinator", nil, nil, certs.Client, 825*day); err != nil {
		t.Fatal(err)
	}
	ca := read(t, filepath.Join(caDir, certs.CACertFile))
	if leaf := read(t, filepath.Join(out, "coordinator.crt")); leaf.NotAfter.After(ca.NotAfter) {
		t.Errorf("leaf expires %s, after its CA %s", leaf.NotAfter, ca.NotAfter)
	}
}

func TestBadRequestsAreRefusedBeforeAnythingIsWritten(t *testing.T) {
	caDir := newCA(t)
	tests := []struct {
		name   string
		caDir  string
		cert   string
		dns    []string
		usage  certs.Usage
		wantIn string
	}{
		{"server without a SAN", caDir, "agent-1", nil, certs.Server, "at least one DNS name or IP"},
		{"name with a slash", caDir, "../agent", []string{"a"}, certs.Server, "must start with a letter"},
		{"name with a space", caDir, "agent 1", []string{"a"}, certs.Server, "only letters"},
		{"empty name", caDir, "", []string{"a"}, certs.Server, "empty"},
		{"DNS name with a port", caDir, "agent-1", []string{"agent-1:8443"}, certs.Server, "invalid DNS name"},
		{"DNS name with a space", caDir, "agent-1", []string{"agent 1"}, certs.Server, "invalid DNS name"},
		{"unknown usage", caDir, "agent-1", []string{"a"}, certs.Usage(0), "unknown certificate usage"},
		{"missing CA", filepath.Join(caDir, "nope"), "agent-1", []string{"a"}, certs.Server, "does not exist"},
		{"the CA's own name in its directory", caDir, "ca", []string{"a"}, certs.Server, "CA's own file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			if tt.name == "the CA's own name in its directory" {
				out = caDir
			}
			err := certs.Issue(tt.caDir, out, tt.cert, tt.dns, nil, tt.usage, day)
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantIn)
			}
			if out != caDir {
				if entries, _ := os.ReadDir(out); len(entries) > 0 {
					t.Errorf("files written: %v", entries)
				}
			}
		})
	}
}

func TestACAWhoseKeyDoesNotMatchIsRefused(t *testing.T) {
	a, b := newCA(t), newCA(t)
	data, _ := os.ReadFile(filepath.Join(b, certs.CAKeyFile))
	if err := os.WriteFile(filepath.Join(a, certs.CAKeyFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	err := certs.Issue(a, t.TempDir(), "coordinator", nil, nil, certs.Client, day)
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("err = %v", err)
	}
}
