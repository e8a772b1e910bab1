package tlsconf_test

import (
	"crypto/tls"
	"errors"
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

// pki is one CA with an agent (server) certificate and a coordinator (client) certificate.
type pki struct{ dir, ca, caDir string }

func newPKI(t *testing.T, name string) pki {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := certs.NewCA(caDir, name, 10*day); err != nil {
		t.Fatal(err)
	}
	p := pki{dir: dir, ca: filepath.Join(caDir, certs.CACertFile), caDir: caDir}
	p.issue(t, "agent-1", certs.Server, "localhost")
	p.issue(t, "coordinator", certs.Client)
	return p
}

func (p pki) issue(t *testing.T, name string, u certs.Usage, dns ...string) {
	t.Helper()
	if err := certs.Issue(p.caDir, p.dir, name, dns, []net.IP{net.IPv4(127, 0, 0, 1)}, u, day); err != nil {
		t.Fatal(err)
	}
}

func (p pki) crt(name string) string { return filepath.Join(p.dir, name+".crt") }
func (p pki) key(name string) string { return filepath.Join(p.dir, name+".key") }

func (p pki) server(t *testing.T, allowed ...string) *tls.Config {
	t.Helper()
	cfg, err := tlsconf.Server(p.crt("agent-1"), p.key("agent-1"), p.ca, allowed)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (p pki) client(t *testing.T, name string) *tls.Config {
	t.Helper()
	cfg, err := tlsconf.Client(p.crt(name), p.key(name), p.ca)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "localhost"
	return cfg
}

// handshake runs both sides over an in-memory pipe and returns the server's and the client's error.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	sc, cc := net.Pipe()
	t.Cleanup(func() { sc.Close(); cc.Close() })
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3 clients finish before the server has checked their certificate; a read
			// makes the server's verdict reach the client.
			_, err = s.Write([]byte("ok"))
		}
		if err != nil {
			sc.Close()
		}
		done <- err
	}()
	c := tls.Client(cc, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		buf := make([]byte, 2)
		_, clientErr = c.Read(buf)
	}
	cc.Close()
	return <-done, clientErr
}

func TestAClientWithACertificateFromTheTrustedCAIsAccepted(t *testing.T) {
	p := newPKI(t, "ca-a")
	if serr, cerr := handshake(t, p.server(t), p.client(t, "coordinator")); serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
}

func TestAnAllowedNameIsAccepted(t *testing.T) {
	p := newPKI(t, "ca-a")
	if serr, cerr := handshake(t, p.server(t, "other", "coordinator"), p.client(t, "coordinator")); serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
}

func TestAClientWithoutACertificateIsRefused(t *testing.T) {
	p := newPKI(t, "ca-a")
	client := p.client(t, "coordinator")
	client.Certificates = nil
	serr, cerr := handshake(t, p.server(t), client)
	if serr == nil || cerr == nil {
		t.Fatalf("want both sides to fail, server: %v, client: %v", serr, cerr)
	}
	if !strings.Contains(serr.Error(), "certificate") {
		t.Errorf("server error should mention the certificate: %v", serr)
	}
}

func TestAClientCertificateFromAnotherCAIsRefused(t *testing.T) {
	p := newPKI(t, "ca-a")
	other := newPKI(t, "ca-b")
	client, err := tlsconf.Client(other.crt("coordinator"), other.key("coordinator"), p.ca)
	if err != nil {
		t.Fatal(err)
	}
	client.ServerName = "localhost"
	// Go's client keeps back a certificate the server's CA list does not name; send it anyway, the
	// way a hostile or misconfigured client would, so that the server's own verification is tested.
	foreign := client.Certificates[0]
	client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign, nil }
	serr, cerr := handshake(t, p.server(t), client)
	if serr == nil || cerr == nil {
		t.Fatalf("want both sides to fail, server: %v, client: %v", serr, cerr)
	}
	if !strings.Contains(serr.Error(), "unknown authority") {
		t.Errorf("server error = %v, want a verification failure", serr)
	}
}

func TestAServerCertificateFromAnotherCAIsRefusedByTheClient(t *testing.T) {
	p := newPKI(t, "ca-a")
	other := newPKI(t, "ca-b")
	client, err := tlsconf.Client(p.crt("coordinator"), p.key("coordinator"), other.ca)
	if err != nil {
		t.Fatal(err)
	}
	client.ServerName = "localhost"
	if _, cerr := handshake(t, p.server(t), client); cerr == nil {
		t.Fatal("client accepted a server certificate from an untrusted CA")
	}
}

func TestANameNotInTheAllowlistIsRefusedAndNamed(t *testing.T) {
	p := newPKI(t, "ca-a")
	serr, cerr := handshake(t, p.server(t, "coordinator-prod"), p.client(t, "coordinator"))
	if !errors.Is(serr, tlsconf.ErrNameNotAllowed) {
		t.Fatalf("server error = %v, want ErrNameNotAllowed", serr)
	}
	if !strings.Contains(serr.Error(), `"coordinator"`) {
		t.Errorf("server error does not name the presented identity: %v", serr)
	}
	if cerr == nil {
		t.Error("client was not told it was refused")
	}
}

func TestATLS12OnlyClientIsRefused(t *testing.T) {
	p := newPKI(t, "ca-a")
	client := p.client(t, "coordinator")
	client.MinVersion = tls.VersionTLS12
	client.MaxVersion = tls.VersionTLS12
	serr, cerr := handshake(t, p.server(t), client)
	if serr == nil || cerr == nil {
		t.Fatalf("want both sides to fail, server: %v, client: %v", serr, cerr)
	}
}

func TestConfigsRequireTLS13(t *testing.T) {
	p := newPKI(t, "ca-a")
	if v := p.server(t).MinVersion; v != tls.VersionTLS13 {
		t.Errorf("server MinVersion = %x", v)
	}
	if v := p.client(t, "coordinator").MinVersion; v != tls.VersionTLS13 {
		t.Errorf("client MinVersion = %x", v)
	}
}

func TestAHandshakeOverLoopbackTCPWorks(t *testing.T) {
	p := newPKI(t, "ca-a")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.server(t, "coordinator"))
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
	client := p.client(t, "coordinator")
	client.ServerName = "" // verify against the 127.0.0.1 IP SAN
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestBadFilesAreNamedWithWhatIsWrong(t *testing.T) {
	p := newPKI(t, "ca-a")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "garbage.crt")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	keyOnly := filepath.Join(dir, "keyonly.pem")
	data, _ := os.ReadFile(p.key("coordinator"))
	os.WriteFile(keyOnly, data, 0o600)
	missing := filepath.Join(dir, "missing.crt")

	tests := []struct {
		name           string
		cert, key, ca  string
		wantSubstrings []string
	}{
		{"missing certificate", missing, p.key("agent-1"), p.ca, []string{missing, "missing"}},
		{"missing key", p.crt("agent-1"), missing, p.ca, []string{missing, "missing"}},
		{"missing CA", p.crt("agent-1"), p.key("agent-1"), missing, []string{missing, "missing"}},
		{"certificate not PEM", notPEM, p.key("agent-1"), p.ca, []string{notPEM, "not PEM"}},
		{"key of another certificate", p.crt("agent-1"), p.key("coordinator"), p.ca, []string{p.crt("agent-1"), p.key("coordinator"), "does the key belong"}},
		{"CA file without a certificate", p.crt("agent-1"), p.key("agent-1"), keyOnly, []string{keyOnly, "no certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, serr := tlsconf.Server(tt.cert, tt.key, tt.ca, nil)
			_, cerr := tlsconf.Client(tt.cert, tt.key, tt.ca)
			for _, err := range []error{serr, cerr} {
				if err == nil {
					t.Fatal("no error")
				}
				for _, s := range tt.wantSubstrings {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := map[string]bool{
		"127.0.0.1:8443":       true,
		"127.1.2.3:8443":       true,
		"[::1]:8443":           true,
		"localhost:8443":       true,
		"LOCALHOST:1":          true,
		"127.0.0.1":            true,
		"::1":                  true,
		"[::ffff:127.0.0.1]:1": true,
		"":                     false,
		":8443":                false,
		"0.0.0.0:8443":         false,
		"[::]:8443":            false,
		"10.0.0.5:8443":        false,
		"agent-1:8443":         false,
		"localhost.evil.com:1": false,
	}
	for addr, want := range tests {
		if got := tlsconf.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestAnAllowedDNSNameMatchesEvenWhenTheCommonNameDoesNot(t *testing.T) {
	p := newPKI(t, "ca-a")
	p.issue(t, "coord-2", certs.Client, "coordinator.example.com")
	serr, cerr := handshake(t, p.server(t, "coordinator.example.com"), p.client(t, "coord-2"))
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
}

func TestASecondConnectionToAServerResumesItsSessionStillMutuallyAuthenticated(t *testing.T) {
	p := newPKI(t, "ca-a")
	server, client := p.server(t, "coordinator"), p.client(t, "coordinator")
	l, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// The server answers each connection with "ok" once its handshake is done and reports what it
	// saw of the client.
	type seen struct {
		resumed bool
		peer    string
		err     error
	}
	seenc := make(chan seen, 2)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				tc := conn.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					seenc <- seen{err: err}
					return
				}
				st := tc.ConnectionState()
				var peer string
				if len(st.PeerCertificates) > 0 {
					peer = st.PeerCertificates[0].Subject.CommonName
				}
				_, err := tc.Write([]byte("ok"))
				seenc <- seen{resumed: st.DidResume, peer: peer, err: err}
			}()
		}
	}()
	dial := func() (clientResumed bool) {
		t.Helper()
		c, err := tls.Dial("tcp", l.Addr().String(), client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// The read takes in the server's session ticket, which follows the handshake in TLS 1.3.
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().DidResume
	}

	if dial() {
		t.Fatal("the first connection resumed a session")
	}
	if s := <-seenc; s.err != nil || s.resumed || s.peer != "coordinator" {
		t.Fatalf("first connection, server side: %+v", s)
	}
	if !dial() {
		t.Fatal("the second connection did not resume the session")
	}
	if s := <-seenc; s.err != nil || !s.resumed || s.peer != "coordinator" {
		t.Fatalf("second connection, server side: %+v, want resumed with the client's certificate", s)
	}
}
