package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names of the CA inside its directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Usage says what a leaf certificate may be used for.
type Usage int

const (
	// Server is for an agent's TCP listener (ExtKeyUsageServerAuth).
	Server Usage = iota + 1
	// Client is for a coordinator dialling agents (ExtKeyUsageClientAuth).
	Client
	// Both allows either.
	Both
)

func (u Usage) String() string {
	switch u {
	case Server:
		return "server"
	case Client:
		return "client"
	case Both:
		return "server+client"
	}
	return fmt.Sprintf("Usage(%d)", int(u))
}

func (u Usage) extKeyUsage() ([]x509.ExtKeyUsage, error) {
	switch u {
	case Server:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil
	case Client:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	case Both:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil
	}
	return nil, fmt.Errorf("unknown certificate usage %d", int(u))
}

// ErrExists is wrapped, with the file's path, when a file to be written already exists and Force was
// not given. errors.Is(err, fs.ErrExist) holds for it too.
var ErrExists error = existsError{}

type existsError struct{}

func (existsError) Error() string        { return "already exists, not overwritten" }
func (existsError) Is(target error) bool { return target == fs.ErrExist }

// Option changes how NewCA and Issue write their files.
type Option func(*options)

type options struct {
	force bool
	now   func() time.Time
}

// Force overwrites existing certificate and key files instead of failing with ErrExists.
func Force() Option { return func(o *options) { o.force = true } }

func collect(opts []Option) options {
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// backdate lets a certificate be used at once by a host whose clock is a little behind.
const backdate = 5 * time.Minute

// NewCA creates dir (mode 0700) if needed and writes a self-signed CA certificate ca.crt (CommonName
// name) and its key ca.key (mode 0600), valid for validity. It fails with ErrExists when either file
// is there already and Force is not given, and then writes nothing.
func NewCA(dir, name string, validity time.Duration, opts ...Option) error {
	o := collect(opts)
	if err := checkName(name); err != nil {
		return err
	}
	if validity <= 0 {
		return fmt.Errorf("CA %q: validity must be positive, got %s", name, validity)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if err := checkFree(o, certPath, keyPath); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("CA %q: generate key: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"haroll"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// The CA signs leaves only, never intermediates.
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:   keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("CA %q: create certificate: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("CA %q: %w", name, err)
	}
	return writePair(o, certPath, keyPath, der, key)
}

// Issue signs a certificate for name with the CA in caDir and writes <name>.crt and <name>.key (mode
// 0600) into outDir, creating it if needed. The CommonName is name; dnsNames and ipAddrs become the
// SANs. A Server (or Both) certificate needs at least one SAN, since TLS clients check the dialled
// host against the SANs only. The validity is cut to the CA's own expiry. It fails with ErrExists
// when either file is there already and Force is not given, and then writes nothing.
func Issue(caDir, outDir, name string, dnsNames []string, ipAddrs []net.IP, usage Usage, validity time.Duration, opts ...Option) error {
	o := collect(opts)
	if err := checkName(name); err != nil {
		return err
	}
	eku, err := usage.extKeyUsage()
	if err != nil {
		return err
	}
	for _, d := range dnsNames {
		if err := checkDNSName(d); err != nil {
			return fmt.Errorf("certificate %q: %w", name, err)
		}
	}
	for _, ip := range ipAddrs {
		if ip == nil || (ip.To4() == nil && len(ip) != net.IPv6len) {
			return fmt.Errorf("certificate %q: invalid IP address %v", name, ip)
		}
	}
	if usage != Client && len(dnsNames) == 0 && len(ipAddrs) == 0 {
		return fmt.Errorf("certificate %q: a %s certificate needs at least one DNS name or IP address", name, usage)
	}
	if validity <= 0 {
		return fmt.Errorf("certificate %q: validity must be positive, got %s", name, validity)
	}
	certPath, keyPath := filepath.Join(outDir, name+".crt"), filepath.Join(outDir, name+".key")
	if err := checkNotCA(caDir, certPath, keyPath); err != nil {
		return err
	}
	if err := checkFree(o, certPath, keyPath); err != nil {
		return err
	}
	ca, caKey, err := LoadCA(caDir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certificate %q: generate key: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := o.now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(now) {
		return fmt.Errorf("CA %s expired on %s: make a new CA", filepath.Join(caDir, CACertFile), ca.NotAfter.Format(time.DateOnly))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"haroll"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		DNSNames:              dnsNames,
		IPAddresses:           ipAddrs,
		SubjectKeyId:          keyID(&key.PublicKey),
		AuthorityKeyId:        ca.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certificate %q: sign: %w", name, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("certificate %q: %w", name, err)
	}
	return writePair(o, certPath, keyPath, der, key)
}

// LoadCA reads ca.crt and ca.key from dir and checks that they belong together and that the
// certificate is a CA. Errors name the file and what is wrong with it; a missing file matches
// fs.ErrNotExist.
func LoadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	cert, err := readCertificate(certPath, "CA certificate")
	if err != nil {
		return nil, nil, err
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("CA certificate %s is not a CA certificate", certPath)
	}
	block, err := readPEM(keyPath, "CA key")
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if ek, ecErr := x509.ParseECPrivateKey(block.Bytes); ecErr == nil {
			k, err = ek, nil
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("CA key %s: want an ECDSA key, got %T", keyPath, k)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("CA key %s does not match CA certificate %s", keyPath, certPath)
	}
	return cert, key, nil
}

// ReadCertificate reads the first certificate of a PEM file; a missing file matches fs.ErrNotExist.
func ReadCertificate(path string) (*x509.Certificate, error) {
	return readCertificate(path, "certificate")
}

func readCertificate(path, what string) (*x509.Certificate, error) {
	block, err := readPEM(path, what)
	if err != nil {
		return nil, err
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s %s: PEM block is %q, want CERTIFICATE", what, path, block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return cert, nil
}

func readPEM(path, what string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %s: %w", what, path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s %s is not PEM", what, path)
	}
	return block, nil
}

// checkName keeps name usable as a file name and as a CommonName.
func checkName(name string) error {
	if name == "" {
		return errors.New("certificate name is empty")
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("certificate name %q must start with a letter or digit", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("certificate name %q: only letters, digits, '-', '_' and '.' are allowed", name)
		}
	}
	return nil
}

// checkDNSName is a light check: enough to catch an address with a port, a URL or a stray space.
func checkDNSName(d string) error {
	name := strings.TrimPrefix(d, "*.")
	if name == "" || len(d) > 253 || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Errorf("invalid DNS name %q", d)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return fmt.Errorf("invalid DNS name %q: unexpected %q", d, r)
		}
	}
	return nil
}

// checkNotCA refuses to write a leaf over the CA's own files (name "ca" in the CA directory).
func checkNotCA(caDir string, paths ...string) error {
	for _, ca := range []string{filepath.Join(caDir, CACertFile), filepath.Join(caDir, CAKeyFile)} {
		caAbs, err1 := filepath.Abs(ca)
		for _, p := range paths {
			pAbs, err2 := filepath.Abs(p)
			if err1 == nil && err2 == nil && caAbs == pAbs {
				return fmt.Errorf("%s is the CA's own file: choose another name or output directory", p)
			}
		}
	}
	return nil
}

func checkFree(o options, paths ...string) error {
	if o.force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: %w", p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func writePair(o options, certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", keyPath, err)
	}
	// The key goes first: a certificate without its key is useless, a key without a certificate is
	// harmless and is overwritten by a retry with force.
	if err := writeFile(o, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFile(o, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile writes through a temporary file and a rename so that a crash never leaves a half-written
// key; without force the final link is made with os.Link, which fails if the file appeared meanwhile.
func writeFile(o options, path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if o.force {
		err = os.Rename(tmpName, path)
	} else {
		err = os.Link(tmpName, path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never zero
}

// keyID is the SHA-256 of the public key, truncated as RFC 7093 allows.
func keyID(pub *ecdsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return bytes.Clone(sum[:20])
}
