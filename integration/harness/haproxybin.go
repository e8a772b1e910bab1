//go:build linux

package harness

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// HAProxyVersion returns the first line of `haproxy -v` for the binary FindHAProxy picks, e.g.
// "HAProxy version 3.0.11-1+deb13u4 2026/10/15 - https://haproxy.org/", so tests can log which
// HAProxy they ran against. It returns FindHAProxy's error when there is none.
func HAProxyVersion() (string, error) {
	bin, err := FindHAProxy()
	if err != nil {
		return "", err
	}
	return BinaryVersion(bin)
}

// BinaryVersion returns the first line of `bin -v`.
func BinaryVersion(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -v: %w: %s", bin, err, strings.TrimSpace(string(out)))
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.HasPrefix(first, "HAProxy version ") {
		return "", fmt.Errorf("%s -v: unexpected output %q", bin, first)
	}
	return first, nil
}
