package cli

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/daemon"
	"github.com/haroll/haroll/internal/tlsconf"
)

func newAgent() *cobra.Command {
	var plaintext bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent daemon: serve this host's slots over gRPC (mutual TLS) and a unix socket",
		Long: `agent serves the host's slots to a coordinator over gRPC with mutual TLS on
"listen" (tls.cert, tls.key, tls.client_ca), and to the haroll CLI on this host
over the unix socket "socket" (mode 0660). One replacement runs at a time. On
SIGTERM it rolls back the slot in progress, starts no other, and exits.
With metrics.listen set, it serves Prometheus metrics on GET /metrics there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadAgentConfig(cmd)
			if err != nil {
				return err
			}
			creds, err := listenCredentials(cfg, plaintext)
			if err != nil {
				return err
			}
			m := newAgentMetrics(cfg)
			a, closeAgent, err := openAgent(cmd.Context(), cfg, m)
			if err != nil {
				return err
			}
			defer closeAgent()
			// Served from before the recovery to after the last slot
			// in progress has finished or rolled back.
			stopMetrics, err := m.serve(a, cfg.Metrics.Listen)
			if err != nil {
				return err
			}
			defer stopMetrics()
			return daemon.Serve(cmd.Context(), cfg, a, daemon.Options{Creds: creds, Version: version, Log: slog.Default()})
		},
	}
	agentFlags(cmd)
	cmd.Flags().String("listen", "", "TCP address for gRPC with mutual TLS (overrides listen)")
	cmd.Flags().BoolVar(&plaintext, "insecure", false, "serve plaintext gRPC on listen; refused unless listen is a loopback address")
	return cmd
}

// listenCredentials builds the TCP listener's credentials: mutual TLS, or
// plaintext only when asked for explicitly and only on loopback.
func listenCredentials(cfg agent.Config, plaintext bool) (credentials.TransportCredentials, error) {
	if cfg.Listen == "" {
		if plaintext {
			return nil, usageError("--insecure without listen: there is no TCP listener to make plaintext")
		}
		return nil, nil
	}
	if plaintext {
		if !tlsconf.IsLoopback(cfg.Listen) {
			return nil, fmt.Errorf("--insecure: refusing plaintext gRPC on %s, which is not a loopback address: configure tls.cert, tls.key and tls.client_ca", cfg.Listen)
		}
		return insecure.NewCredentials(), nil
	}
	var missing []string
	for key, v := range map[string]string{"tls.cert": cfg.TLS.Cert, "tls.key": cfg.TLS.Key, "tls.client_ca": cfg.TLS.ClientCA} {
		if v == "" {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("listen %s needs mutual TLS: set %v (make them with `haroll certs`), or pass --insecure on a loopback address", cfg.Listen, missing)
	}
	tc, err := tlsconf.Server(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA, cfg.TLS.AllowedClients)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}
