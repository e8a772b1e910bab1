package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/certs"
	"github.com/haroll/haroll/internal/tlsconf"
)

// haroll runs the command line with args and returns what it printed.
func haroll(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func mustHaroll(t *testing.T, args ...string) string {
	t.Helper()
	out, err := haroll(t, args...)
	if err != nil {
		t.Fatalf("haroll %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func wantErr(t *testing.T, err error, substrings ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", substrings)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := certs.ReadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertsMakesAChainThatVerifiesForEachRoleAndHandshakes(t *testing.T) {
	dir := t.TempDir()
	pki, agentDir, coordDir := filepath.Join(dir, "pki"), filepath.Join(dir, "agent"), filepath.Join(dir, "coord")
	mustHaroll(t, "certs", "ca", "--dir", pki, "--days", "30")
	out := mustHaroll(t, "certs", "agent", "--ca-dir", pki, "--out", agentDir, "--name", "agent-1",
		"--host", "localhost", "--host", "127.0.0.1", "--days", "7")
	if !strings.Contains(out, "SANs=localhost,127.0.0.1") {
		t.Errorf("output does not show the SANs:\n%s", out)
	}
	mustHaroll(t, "certs", "coordinator", "--ca-dir", pki, "--out", coordDir)

	ca := filepath.Join(pki, certs.CACertFile)
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, ca))
	agent := readCert(t, filepath.Join(agentDir, "agent-1.crt"))
	if _, err := agent.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("agent certificate: %v", err)
	}
	coord := readCert(t, filepath.Join(coordDir, "coordinator.crt"))
	if coord.Subject.CommonName != "coordinator" {
		t.Errorf("coordinator CN = %q", coord.Subject.CommonName)
	}
	if _, err := coord.Verify(x509.VerifyOptions{Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("coordinator certificate: %v", err)
	}
	if d := time.Until(agent.NotAfter); d > 8*24*time.Hour {
		t.Errorf("agent certificate valid for %s, want --days 7", d)
	}

	server, err := tlsconf.Server(filepath.Join(agentDir, "agent-1.crt"), filepath.Join(agentDir, "agent-1.key"), ca, []string{"coordinator"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := tlsconf.Client(filepath.Join(coordDir, "coordinator.crt"), filepath.Join(coordDir, "coordinator.key"), ca)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil {
		t.Fatalf("the agent refused the coordinator: %v", err)
	}
}

func TestCertsAgentWithoutAHostIsAUsageError(t *testing.T) {
	pki := filepath.Join(t.TempDir(), "pki")
	mustHaroll(t, "certs", "ca", "--dir", pki)
	_, err := haroll(t, "certs", "agent", "--ca-dir", pki, "--out", t.TempDir(), "--name", "agent-1")
	wantErr(t, err, "--host", "see --help")
}

func TestCertsAgentRefusesAHostWithAPort(t *testing.T) {
	pki := filepath.Join(t.TempDir(), "pki")
	mustHaroll(t, "certs", "ca", "--dir", pki)
	_, err := haroll(t, "certs", "agent", "--ca-dir", pki, "--out", t.TempDir(), "--name", "agent-1", "--host", "agent-1:7443")
	wantErr(t, err, "without the port")
}

func TestCertsWithoutACATellsHowToMakeOne(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := haroll(t, "certs", "coordinator", "--ca-dir", missing, "--out", t.TempDir())
	wantErr(t, err, "no CA in "+missing, "haroll certs ca --dir "+missing)
}

func TestCertsWithAnUnreadableCASaysWhatIsWrong(t *testing.T) {
	pki := filepath.Join(t.TempDir(), "pki")
	mustHaroll(t, "certs", "ca", "--dir", pki)
	if err := os.WriteFile(filepath.Join(pki, certs.CAKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := haroll(t, "certs", "coordinator", "--ca-dir", pki, "--out", t.TempDir())
	wantErr(t, err, filepath.Join(pki, certs.CAKeyFile), "not PEM")
}

func TestCertsKeepsExistingFilesUnlessForced(t *testing.T) {
	pki := filepath.Join(t.TempDir(), "pki")
	out := t.TempDir()
	mustHaroll(t, "certs", "ca", "--dir", pki)
	_, err := haroll(t, "certs", "ca", "--dir", pki)
	wantErr(t, err, filepath.Join(pki, certs.CACertFile), "already exists", "--force")

	mustHaroll(t, "certs", "coordinator", "--ca-dir", pki, "--out", out)
	before, _ := os.ReadFile(filepath.Join(out, "coordinator.key"))
	_, err = haroll(t, "certs", "coordinator", "--ca-dir", pki, "--out", out)
	wantErr(t, err, "coordinator.", "--force")
	mustHaroll(t, "certs", "coordinator", "--ca-dir", pki, "--out", out, "--force")
	if after, _ := os.ReadFile(filepath.Join(out, "coordinator.key")); bytes.Equal(before, after) {
		t.Error("--force did not replace the key")
	}
}

func TestCertsRefusesANonPositiveValidity(t *testing.T) {
	_, err := haroll(t, "certs", "ca", "--dir", filepath.Join(t.TempDir(), "pki"), "--days", "0")
	wantErr(t, err, "--days")
}
