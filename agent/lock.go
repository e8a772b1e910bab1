package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Lock is the host lock: an open file description lock (F_OFD_SETLK) on
// state_dir/haroll.lock, held for the whole of a replacement, so a manual
// redeploy and a coordinator's rollout never touch the same host at once.
// The file says who holds it. Unlike flock, it can be tested (F_OFD_GETLK)
// without being taken: reading who holds it never makes a taker busy.
type Lock struct{ f *os.File }

// lockRange is the whole file, written for an exclusive lock.
func lockRange(typ int16) *unix.Flock_t {
	return &unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: 0, Len: 0}
}

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
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, lockRange(unix.F_WRLCK)); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("%w: held by %s (lock %s)", ErrBusy, holderOf(path), path)
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
	return l.f.Close() // closing the description drops its lock
}

// LockHolder returns who holds the host lock in stateDir, or "" when nobody
// does (or the lock cannot be read). It only tests the lock, never takes it.
func LockHolder(stateDir string) string {
	path := filepath.Join(stateDir, "haroll.lock")
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	lk := lockRange(unix.F_RDLCK)
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, lk); err != nil || lk.Type == unix.F_UNLCK {
		return "" // nobody holds it, or it cannot be tested
	}
	return holderOf(path)
}

// holderOf reads the holder's line from the lock file.
func holderOf(path string) string {
	b, _ := os.ReadFile(path)
	if h := strings.TrimSpace(string(b)); h != "" {
		return h
	}
	return "another process"
}
