package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/internal/certs"
)

const defaultPKIDir = "/etc/haroll/pki"

// newCerts groups the commands that make the PKI behind the agents' mutual TLS: one CA, a server
// certificate per agent, a client certificate per coordinator. Nothing existing is overwritten without
// --force.
func newCerts() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make the CA and the certificates for the agents' mutual TLS",
		Long: `certs makes a small PKI (ECDSA P-256): a CA, a server certificate for each
agent (with the names and addresses the coordinator dials as SANs) and a client
certificate for each coordinator (its name is what agents allow). Keys are written
with mode 0600; existing files are only replaced with --force.

  haroll certs ca --dir /etc/haroll/pki
  haroll certs agent --ca-dir /etc/haroll/pki --out ./agent-1 --name agent-1 \
      --host agent-1.example.com --host 10.0.0.5
  haroll certs coordinator --ca-dir /etc/haroll/pki --out ./coordinator`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertsCA(), newCertsAgent(), newCertsCoordinator())
	return cmd
}

func newCertsCA() *cobra.Command {
	var (
		dir, name string
		days      int
		force     bool
	)
	cmd := &cobra.Command{
		Use:   "ca [--dir DIR] [--name NAME] [--days N]",
		Short: "Make the CA: ca.crt (give to every agent and coordinator) and ca.key (keep private)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			validity, err := daysFlag(days)
			if err != nil {
				return err
			}
			if dir == "" {
				return usageError("--dir is required")
			}
			if err := certs.NewCA(dir, name, validity, forceOpt(force)...); err != nil {
				return certsError(err)
			}
			w := cmd.OutOrStdout()
			if err := describe(w, filepath.Join(dir, certs.CACertFile)); err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %s (mode 0600): keep it on this machine only; it signs every certificate\n",
				filepath.Join(dir, certs.CAKeyFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", defaultPKIDir, "directory for ca.crt and ca.key (created with mode 0700)")
	f.StringVar(&name, "name", "haroll-ca", "the CA's CommonName")
	f.IntVar(&days, "days", 3650, "days the CA is valid")
	f.BoolVar(&force, "force", false, "replace an existing CA (every certificate it signed stops being trusted)")
	return cmd
}

func newCertsAgent() *cobra.Command {
	var (
		caDir, out, name string
		hosts            []string
		days             int
		force            bool
	)
	cmd := &cobra.Command{
		Use:   "agent --name NAME --host HOST... [--ca-dir DIR] [--out DIR] [--days N]",
		Short: "Issue an agent's server certificate, valid for each --host",
		Long: `agent issues NAME.crt and NAME.key for an agent's TCP listener. Every name or
address the coordinator uses to reach the agent must be given as --host: the
coordinator checks the dialled host against these names only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			validity, err := daysFlag(days)
			if err != nil {
				return err
			}
			if name == "" {
				return usageError("--name is required (e.g. the agent's host name)")
			}
			if len(hosts) == 0 {
				return usageError("at least one --host is required: each DNS name or IP address the coordinator dials this agent by")
			}
			dnsNames, ips, err := splitHosts(hosts)
			if err != nil {
				return err
			}
			if err := checkCA(caDir); err != nil {
				return err
			}
			if err := certs.Issue(caDir, out, name, dnsNames, ips, certs.Server, validity, forceOpt(force)...); err != nil {
				return certsError(err)
			}
			return describeLeaf(cmd.OutOrStdout(), out, name)
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca-dir", defaultPKIDir, "directory holding ca.crt and ca.key")
	f.StringVar(&out, "out", ".", "directory to write NAME.crt and NAME.key to")
	f.StringVar(&name, "name", "", "the agent's name: CommonName and file name (required)")
	f.StringArrayVar(&hosts, "host", nil, "a DNS name or IP address the agent is reached at (repeatable, at least one)")
	f.IntVar(&days, "days", 825, "days the certificate is valid (never past the CA's own expiry)")
	f.BoolVar(&force, "force", false, "replace existing NAME.crt and NAME.key")
	return cmd
}

func newCertsCoordinator() *cobra.Command {
	var (
		caDir, out, name string
		days             int
		force            bool
	)
	cmd := &cobra.Command{
		Use:   "coordinator [--name NAME] [--ca-dir DIR] [--out DIR] [--days N]",
		Short: "Issue a coordinator's client certificate; NAME is what agents allow",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			validity, err := daysFlag(days)
			if err != nil {
				return err
			}
			if name == "" {
				return usageError("--name must not be empty")
			}
			if err := checkCA(caDir); err != nil {
				return err
			}
			if err := certs.Issue(caDir, out, name, nil, nil, certs.Client, validity, forceOpt(force)...); err != nil {
				return certsError(err)
			}
			return describeLeaf(cmd.OutOrStdout(), out, name)
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca-dir", defaultPKIDir, "directory holding ca.crt and ca.key")
	f.StringVar(&out, "out", ".", "directory to write NAME.crt and NAME.key to")
	f.StringVar(&name, "name", "coordinator", "the coordinator's name: CommonName and file name")
	f.IntVar(&days, "days", 825, "days the certificate is valid (never past the CA's own expiry)")
	f.BoolVar(&force, "force", false, "replace existing NAME.crt and NAME.key")
	return cmd
}

func daysFlag(days int) (time.Duration, error) {
	if days <= 0 {
		return 0, usageError("--days must be at least 1, got %d", days)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

func forceOpt(force bool) []certs.Option {
	if force {
		return []certs.Option{certs.Force()}
	}
	return nil
}

// splitHosts sorts --host values into IP addresses and DNS names for the SANs.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP, err error) {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if _, port, err := net.SplitHostPort(h); err == nil {
			return nil, nil, usageError("--host %q: give the name or address without the port %s", h, port)
		}
		if strings.Contains(h, "://") || strings.Contains(h, "/") {
			return nil, nil, usageError("--host %q: want a DNS name or IP address, not a URL or path", h)
		}
		if h == "" {
			return nil, nil, usageError("--host must not be empty")
		}
		dnsNames = append(dnsNames, h)
	}
	return dnsNames, ips, nil
}

// checkCA reports a missing or unreadable CA before anything else, with the command that makes one.
func checkCA(caDir string) error {
	if caDir == "" {
		return usageError("--ca-dir is required")
	}
	if _, _, err := certs.LoadCA(caDir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no CA in %s: %w (make one with `haroll certs ca --dir %s`)", caDir, err, caDir)
		}
		return fmt.Errorf("CA in %s: %w", caDir, err)
	}
	return nil
}

func certsError(err error) error {
	if errors.Is(err, certs.ErrExists) {
		return fmt.Errorf("%w; pass --force to replace it", err)
	}
	return err
}

func describeLeaf(w io.Writer, out, name string) error {
	if err := describe(w, filepath.Join(out, name+".crt")); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s (mode 0600)\n", filepath.Join(out, name+".key"))
	return nil
}

// describe prints what was written, read back from the file, so that the output shows the
// certificate as it is (the validity may have been cut to the CA's).
func describe(w io.Writer, path string) error {
	c, err := certs.ReadCertificate(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s: CN=%s", path, c.Subject.CommonName)
	var sans []string
	sans = append(sans, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	if len(sans) > 0 {
		fmt.Fprintf(w, " SANs=%s", strings.Join(sans, ","))
	}
	fmt.Fprintf(w, " valid until %s\n", c.NotAfter.UTC().Format(time.DateOnly))
	return nil
}
