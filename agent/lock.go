package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Lock is the host lock: an flock on state_dir/haroll.lock held for the whole
// of a replacement, so a manual redeploy and a coordinator's rollout never
// touch the same host at once. The file says who holds it.
type Lock struct{ f *os.File }

// AcquireLock takes the host lock without waiting. When another process
// holds it, the error wraps ErrBusy and names the holder.
func AcquireLock(stateDir, holder string) (*Lock, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", stateDir, err)
	}
	path := filepath.Join(stateDir, "haroll.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("host lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			return nil, fmt.Errorf("%w: held by %s (lock %s)", ErrBusy, strings.TrimSpace(string(b)), path)
		}
		return nil, fmt.Errorf("host lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(holder+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release frees the lock.
func (l *Lock) Release() error {
	_ = l.f.Truncate(0)
	return l.f.Close() // closing the descriptor drops the flock
}

// LockHolder returns who holds the host lock in stateDir, or "" when nobody
// does (or the lock cannot be read).
func LockHolder(stateDir string) string {
	path := filepath.Join(stateDir, "haroll.lock")
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		return "" // nobody holds it exclusively; closing drops our shared lock
	}
	b, _ := os.ReadFile(path)
	if h := strings.TrimSpace(string(b)); h != "" {
		return h
	}
	return "another process"
}
