package cli

import (
	"context"
	"fmt"
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
	var level, format string
	root := &cobra.Command{
		Use:           "haroll",
		Short:         "Replace Docker containers behind HAProxy without losing a request",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return setupLogging(level, format)
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "warn", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&format, "log-format", logFormatAuto, "log format: auto (text on a terminal, JSON otherwise, e.g. under systemd), json, text")
	root.AddCommand(newRedeploy(), newStatus(), newVersion(), newAgent(), newCerts(), newRecover(), newRollout())
	return root
}

// usageError marks flag problems so they read as such.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%s (see --help)", strings.TrimSpace(fmt.Sprintf(format, args...)))
}
