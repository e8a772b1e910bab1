package hook

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/internal/hook/hooktest"
)

func TestNoCommandIsNoHookAndValid(t *testing.T) {
	if errs := (Config{Timeout: DefaultTimeout}).Validate("hooks.pre"); len(errs) != 0 {
		t.Fatal(errs)
	}
}

func TestValidateNamesTheKeyAndSaysWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"relative path", Config{Command: []string{"check.sh"}}, `hooks.pre_drain.command[0]: "check.sh": want the absolute path`},
		{"missing file", Config{Command: []string{filepath.Join(dir, "nope")}}, "no such file or directory"},
		{"not executable", Config{Command: []string{notExec}}, "is not executable (mode -rw-r--r--)"},
		{"a directory", Config{Command: []string{dir}}, "is not a regular file"},
		{"timeout without unit", Config{Command: []string{"/bin/true"}, Timeout: 30}, "hooks.pre_drain.timeout: 30ns: must be at least 1ms"},
		{"negative timeout", Config{Command: []string{"/bin/true"}, Timeout: -time.Second}, "hooks.pre_drain.timeout: -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := errors.Join(tc.c.Validate("hooks.pre_drain")...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAnAbsoluteExecutableIsValid(t *testing.T) {
	p := hooktest.Script(t, "exit 0\n")
	if errs := (Config{Command: []string{p, "--fast"}, Timeout: time.Millisecond}).Validate("hooks.post"); len(errs) != 0 {
		t.Fatal(errs)
	}
}
