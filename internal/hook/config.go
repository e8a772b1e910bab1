package hook

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultTimeout bounds a hook whose timeout is not set.
const DefaultTimeout = 30 * time.Second

// Config is one hook as an operator configures it, e.g.
//
//	pre_drain: {command: ["/usr/local/bin/check", "--fast"], timeout: 30s}
type Config struct {
	// Command is the executable's absolute path followed by its arguments,
	// passed to it as they are: no shell, no expansion, no quoting. Empty
	// means no hook.
	Command []string `mapstructure:"command"`
	// Timeout bounds the run; zero means DefaultTimeout. At the timeout the
	// hook's whole process group is killed and the hook has failed.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Set reports whether a command is configured.
func (c Config) Set() bool { return len(c.Command) > 0 }

// timeout is the effective bound of a run.
func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Validate returns every problem of c, each naming key (e.g.
// "hooks.pre_drain") and the value. It looks at the file system: the command
// must be an absolute path to an existing regular file with an execute bit.
// A Config without a command is valid, whatever its timeout: no hook runs.
func (c Config) Validate(key string) []error {
	var errs []error
	bad := func(k string, val any, why string) {
		errs = append(errs, fmt.Errorf("%s.%s: %v: %s", key, k, val, why))
	}
	if c.Timeout != 0 && c.Timeout < time.Millisecond {
		bad("timeout", c.Timeout, "must be at least 1ms: write it with a unit, e.g. 30s (or leave it out for 30s)")
	}
	if !c.Set() {
		return errs
	}
	for i, arg := range c.Command {
		if strings.IndexByte(arg, 0) >= 0 {
			bad(fmt.Sprintf("command[%d]", i), fmt.Sprintf("%q", arg), "contains a NUL byte")
		}
	}
	path := c.Command[0]
	if !filepath.IsAbs(path) {
		bad("command[0]", fmt.Sprintf("%q", path), "want the absolute path of an executable: hooks are run directly, without a shell or a PATH search")
		return errs
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		bad("command[0]", path, fmt.Sprintf("cannot be run: %v", err))
	case !fi.Mode().IsRegular():
		bad("command[0]", path, fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type()))
	case fi.Mode().Perm()&0o111 == 0:
		bad("command[0]", path, fmt.Sprintf("is not executable (mode %s): chmod +x it", fi.Mode().Perm()))
	}
	return errs
}
