package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Execute runs the haroll command line and prints the error, if any.
func Execute() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "haroll:", err)
	}
	return err
}

func newRoot() *cobra.Command {
	var level string
	root := &cobra.Command{
		Use:           "haroll",
		Short:         "Replace Docker containers behind HAProxy without losing a request",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var l slog.Level
			if err := l.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "warn", "log level: debug, info, warn, error")
	root.AddCommand(newRedeploy(), newStatus(), newVersion(), newAgent(), newCerts(), newRecover(), newRollout())
	return root
}

// usageError marks flag problems so they read as such.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%s (see --help)", strings.TrimSpace(fmt.Sprintf(format, args...)))
}
