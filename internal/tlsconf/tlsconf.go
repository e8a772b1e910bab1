package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// ErrNameNotAllowed is wrapped by the handshake error when a client certificate verifies against the CA
// but names nobody in the server's allowlist.
var ErrNameNotAllowed = errors.New("client certificate name not allowed")

// Server returns a TLS 1.3 server config presenting certFile/keyFile that requires and verifies a client
// certificate signed by clientCAFile. When allowedNames is not empty, the client certificate's
// CommonName or one of its DNS SANs must be in it; otherwise the handshake fails with an error wrapping
// ErrNameNotAllowed and naming the presented identity.
//
// Errors name the file and say what is wrong with it: missing, not PEM, key not matching the
// certificate, or a CA file without any certificate.
func Server(certFile, keyFile, clientCAFile string, allowedNames []string) (*tls.Config, error) {
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := loadCAPool(clientCAFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	if len(allowedNames) > 0 {
		allowed := slices.Clone(allowedNames)
		// VerifyConnection runs after chain verification, so the leaf is already known to come from
		// the CA; all that is left is whether it is one of the names the operator allowed.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate presented")
			}
			return checkName(cs.PeerCertificates[0], allowed)
		}
	}
	return cfg, nil
}

// SessionCacheSize is how many agents' TLS sessions a Client config remembers, least recently used
// first out: a fleet's worth, so that a coordinator that dials every host again per batch (and for
// each canary decision) resumes the session instead of a full handshake with certificate
// verification. The cache fills only with hosts actually dialled; an entry holds the agent's ticket
// (about 1 KB) and its parsed certificate, about 4.8 KB in all as measured with a certificate per
// host: some 48 MB at 10,000 hosts, 78 MB full.
const SessionCacheSize = 16384

// Client returns a TLS 1.3 client config presenting certFile/keyFile and trusting only caFile.
// The server's certificate must carry the dialled host name or IP address as a SAN; set ServerName on
// the returned config when dialling by a different name. Errors are as for Server.
//
// Connections made with the same returned config share a session cache of SessionCacheSize entries,
// keyed by server name: a second connection to a host resumes its session (a resumed session is
// still mutually authenticated: the server keeps the client's certificate in its ticket, and
// Server's name check runs again).
func Client(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		RootCAs:            pool,
		ClientSessionCache: tls.NewLRUClientSessionCache(SessionCacheSize),
	}, nil
}

// IsLoopback reports whether a listen or dial address (host:port, or a bare host) is on a loopback
// address (127.0.0.0/8, ::1, "localhost"). "" or ":8443" (all interfaces) is not loopback, and neither
// is any other host name, since it might resolve anywhere.
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

func checkName(leaf *x509.Certificate, allowed []string) error {
	// An empty entry (a stray "" in a config list) must not let a certificate without a CN in.
	for _, n := range append([]string{leaf.Subject.CommonName}, leaf.DNSNames...) {
		if n != "" && slices.Contains(allowed, n) {
			return nil
		}
	}
	return fmt.Errorf("%w: presented CN=%q DNS=%q, allowed %q", ErrNameNotAllowed,
		leaf.Subject.CommonName, leaf.DNSNames, allowed)
}

func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile, "certificate")
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEMFile(keyFile, "private key")
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s and key %s: %w (does the key belong to this certificate?)",
			certFile, keyFile, err)
	}
	return cert, nil
}

func loadCAPool(caFile string) (*x509.CertPool, error) {
	data, err := readPEMFile(caFile, "CA certificate")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	found := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: parse certificate: %w", caFile, err)
		}
		pool.AddCert(c)
		found++
	}
	if found == 0 {
		return nil, fmt.Errorf("CA file %s has no certificate (found no PEM block of type CERTIFICATE)", caFile)
	}
	return pool, nil
}

// readPEMFile reads path and checks that it holds at least one PEM block, so that a wrong path or a DER
// file is reported by name instead of as tls's generic "failed to find any PEM data".
func readPEMFile(path, what string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("no %s file given", what)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s file %s is missing", what, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s file: %w", what, err)
	}
	if b, _ := pem.Decode(data); b == nil {
		return nil, fmt.Errorf("%s file %s is not PEM", what, path)
	}
	return data, nil
}
