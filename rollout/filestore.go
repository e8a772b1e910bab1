package rollout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// FileStore keeps a fleet's rollouts in files beside the state file, on the
// coordinator's machine:
//
//	<state_file>, <state_file>.log   the rollout's state (statelog.go)
//	<state_file>.decision            a canary decision (decision.go)
//	<state_file>.lock                the fleet lock: an flock held for the
//	                                 holder's life, so a crashed holder's
//	                                 lock is free at once (the kernel is
//	                                 the lease)
//	<state_file>.lock.json           the holder's LockInfo
//	<state_file>.token               the last token handed out
//	<state_file>.history             the history index, a RolloutRecord a
//	                                 line
type FileStore struct {
	path string
}

// NewFileStore is the file store of the state file at path. It opens
// nothing: each call reads or writes the files it needs.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// File names beside the state file.
const (
	lockSuffix     = ".lock"
	lockInfoSuffix = ".lock.json"
	tokenSuffix    = ".token"
	historySuffix  = ".history"
)

// lockPoll is how often Acquire tries a held lock again while it waits;
// lockProbeGrace how long it tries at least.
const (
	lockPoll       = 20 * time.Millisecond
	lockProbeGrace = 100 * time.Millisecond
)

func (s *FileStore) String() string { return "state file " + s.path }

// Close does nothing: a FileStore holds no file between calls.
func (s *FileStore) Close() error { return nil }

// ReadState reads the state file and its log (ReadState).
func (s *FileStore) ReadState(context.Context) (*State, error) { return ReadState(s.path) }

func (s *FileStore) stateBackend(l Lease) stateBackend { return fileBackend{s.path, l} }

func (s *FileStore) decisions(Lease) decisionStore { return fileDecisions{s.path} }

// Acquire takes the fleet lock (see Locker): an flock on <state_file>.lock,
// polled every lockPoll for up to wait.
func (s *FileStore) Acquire(ctx context.Context, info LockInfo, wait time.Duration) (Lease, error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return nil, fmt.Errorf("fleet lock: %w", err)
	}
	// At least lockProbeGrace: Status holds a shared flock for a moment,
	// which must not refuse an acquisition that asks not to wait.
	deadline := time.Now().Add(max(wait, lockProbeGrace))
	for {
		f, err := s.tryLock()
		if err != nil {
			return nil, err
		}
		if f != nil {
			return s.hold(f, info)
		}
		if !time.Now().Before(deadline) {
			return nil, s.lockedError(ctx)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the fleet lock (%s): %w", s.lockPath(), context.Cause(ctx))
		case <-time.After(lockPoll):
		}
	}
}

// tryLock takes the flock on the lock file; nil (and no error) when
// another holds it. A lock file that ForceRelease removed between the open
// and the flock is opened again: its flock guards nothing.
func (s *FileStore) tryLock() (*os.File, error) {
	for {
		f, err := os.OpenFile(s.lockPath(), os.O_CREATE|os.O_RDWR, 0o640)
		if err != nil {
			return nil, fmt.Errorf("fleet lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, nil
			}
			return nil, fmt.Errorf("fleet lock %s: %w", s.lockPath(), err)
		}
		if s.isLockFile(f) {
			return f, nil
		}
		_ = f.Close()
	}
}

// isLockFile reports whether f is the file at the lock's path still.
func (s *FileStore) isLockFile(f *os.File) bool {
	held, err1 := f.Stat()
	now, err2 := os.Stat(s.lockPath())
	return err1 == nil && err2 == nil && os.SameFile(held, now)
}

// hold completes an acquisition: a token, and the holder's info beside the
// lock, under the flock f.
func (s *FileStore) hold(f *os.File, info LockInfo) (Lease, error) {
	token, err := s.nextToken()
	if err == nil {
		info.Token, info.Since, info.Store, info.Expires = token, time.Now(), s.lockPath(), time.Time{}
		err = atomicfile.WriteJSON(s.infoPath(), info)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("fleet lock %s: %w", s.lockPath(), err)
	}
	return &fileLease{s: s, f: f, info: info}, nil
}

// nextToken is max(now in ns, last token + 1), written to the token file
// before it is handed out. The flock serialises it.
func (s *FileStore) nextToken() (uint64, error) {
	path := s.path + tokenSuffix
	var last uint64
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if last, err = strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("token file %s: %q is not a number: remove it (the next token is then the clock's)", path, b)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return 0, err
	}
	token := max(uint64(time.Now().UnixNano()), last+1)
	if err := atomicfile.Write(path, []byte(strconv.FormatUint(token, 10)+"\n")); err != nil {
		return 0, err
	}
	return token, nil
}

// lockedError is the refusal: who holds the lock.
func (s *FileStore) lockedError(ctx context.Context) error {
	info, err := holderOf(ctx, s.Status)
	if err != nil {
		return err
	}
	if info == nil { // let go just now: say so rather than name no one
		info = &LockInfo{RolloutID: "(unknown)", Holder: "(a holder that just let go)", Store: s.lockPath()}
	}
	return &LockedError{Holder: *info}
}

// Status is the lock's holder, or nil when it is free (no process holds
// the flock).
func (s *FileStore) Status(context.Context) (*LockInfo, error) {
	f, err := os.Open(s.lockPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fleet lock: %w", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		return nil, nil // free; the flock drops with the close
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("fleet lock %s: %w", s.lockPath(), err)
	}
	info, err := s.readInfo()
	if err != nil {
		return nil, err
	}
	if info == nil { // held, its info not written yet
		info = &LockInfo{RolloutID: "(starting)", Holder: "(unknown)", Store: s.lockPath()}
	}
	return info, nil
}

// readInfo reads the holder's info; nil when there is none.
func (s *FileStore) readInfo() (*LockInfo, error) {
	b, err := os.ReadFile(s.infoPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fleet lock: %w", err)
	}
	var info LockInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("fleet lock info %s is unreadable (%v): remove it", s.infoPath(), err)
	}
	return &info, nil
}

// ForceRelease frees the lock: it removes the lock file and the holder's
// info. A live holder keeps its flock on the removed file, which guards
// nothing any more; its next Check finds its info gone and reports the
// lock lost.
func (s *FileStore) ForceRelease(ctx context.Context) (*LockInfo, error) {
	info, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{s.infoPath(), s.lockPath()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return info, fmt.Errorf("fleet lock: %w", err)
		}
	}
	return info, nil
}

func (s *FileStore) lockPath() string { return s.path + lockSuffix }
func (s *FileStore) infoPath() string { return s.path + lockInfoSuffix }

// fileLease is a held file lock.
type fileLease struct {
	s    *FileStore
	info LockInfo

	mu sync.Mutex
	f  *os.File // nil once released
}

func (l *fileLease) Info() LockInfo { return l.info }

// Check reports the lock lost when it was released, or when the info beside
// the lock file is not this lease's (ForceRelease removed it, another holds
// the lock since) or the lock file is not the one it holds.
func (l *fileLease) Check(context.Context) error {
	l.mu.Lock()
	f := l.f
	l.mu.Unlock()
	if f == nil {
		return fmt.Errorf("%w: %s released it", ErrLockLost, l.info.RolloutID)
	}
	info, err := l.s.readInfo()
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrLockLost, err)
	case info == nil || info.Token != l.info.Token || !l.s.isLockFile(f):
		return fmt.Errorf("%w: %s no longer holds %s (released with `haroll rollout lock release`?)", ErrLockLost, l.info.RolloutID, l.s.lockPath())
	}
	return nil
}

// Release removes the holder's info if it is still this lease's, then
// drops the flock.
func (l *fileLease) Release(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	var err error
	if info, _ := l.s.readInfo(); info != nil && info.Token == l.info.Token {
		if err = os.Remove(l.s.infoPath()); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	_ = l.f.Close()
	l.f = nil
	return err
}

// RecordRollout appends rec to the history file, one JSON line, fsynced.
func (s *FileStore) RecordRollout(_ context.Context, rec RolloutRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	path := s.path + historySuffix
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("history %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("history %s: %w", path, err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("history %s: %w", path, err)
	}
	return nil
}

// Rollouts reads the history file, newest first. A last line cut short by
// a crash is left out; another bad line is an error naming it.
func (s *FileStore) Rollouts(_ context.Context, limit int) ([]RolloutRecord, error) {
	path := s.path + historySuffix
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	defer f.Close()
	var recs []RolloutRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	var bad error
	for n := 1; sc.Scan(); n++ {
		if bad != nil {
			return nil, bad
		}
		var rec RolloutRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			bad = fmt.Errorf("history %s: line %d is corrupt (%v): remove that line", path, n, err)
			continue
		}
		recs = append(recs, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	slices.SortStableFunc(recs, func(a, b RolloutRecord) int {
		switch {
		case a.Token > b.Token:
			return -1
		case a.Token < b.Token:
			return 1
		}
		return 0
	})
	if limit > 0 && len(recs) > limit {
		recs = recs[:limit]
	}
	return recs, nil
}
