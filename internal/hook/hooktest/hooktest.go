// Package hooktest writes hook executables for tests.
package hooktest

import (
	"os"
	"path/filepath"
	"testing"
)

// Script writes an executable shell script with body under t.TempDir() and
// returns its path. haroll executes the file itself (its #! line picks
// /bin/sh): it never runs `sh -c` with text.
func Script(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
