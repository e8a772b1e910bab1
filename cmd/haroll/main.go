// Command haroll replaces Docker containers behind HAProxy without losing a
// request. See internal/cli for its subcommands.
package main

import (
	"os"

	"github.com/haroll/haroll/internal/cli"
)

func main() {
	if err := cli.Execute(); err != nil {
		os.Exit(1)
	}
}
