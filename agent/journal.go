package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
	"github.com/haroll/haroll/runtime"
)

// journalFile holds the replacement in progress on this host: there is at
// most one, since the host lock admits one replacement at a time.
const journalFile = "journal.json"

// Entry is what a replacement must remember to be finished or undone after
// a crash. It is written before each step that changes HAProxy or Docker,
// so it always covers what may have happened.
type Entry struct {
	Slot      string        `json:"slot"`
	Image     string        `json:"image"`
	Phase     Phase         `json:"phase"`
	OldID     string        `json:"old_id"`
	OldImage  string        `json:"old_image"`
	NewID     string        `json:"new_id,omitempty"`
	Weight    int           `json:"weight"`
	State     runtime.State `json:"state"`
	Addr      string        `json:"addr"`
	DrainMode string        `json:"drain_mode"`
	Drained   bool          `json:"drained"`
	Stopped   bool          `json:"stopped"`
	Renamed   bool          `json:"renamed"`
	// Maint: the server is (or may be) in maintenance, set by haroll. It is
	// set before the server goes in and cleared only once it is out.
	Maint bool `json:"maint,omitempty"`
	// Switched: HAProxy may point at the new container's address.
	Switched bool `json:"switched"`
	// StartFirst: the old container kept running beside the new one.
	StartFirst bool `json:"start_first,omitempty"`
	Proven     bool `json:"proven"` // the new container passed the gate
	// Final is the weight the new container gets (0: Weight); Canary: it
	// runs as a canary at Final, out of Full.
	Final   int       `json:"final,omitempty"`
	Full    int       `json:"full,omitempty"`
	Canary  bool      `json:"canary,omitempty"`
	Started time.Time `json:"started"`
	// Failure is the error of the last rollback or recovery of this entry
	// that did not complete, at FailedAt: the slot is wedged until a
	// recovery succeeds, a redeploy takes the slot over, or the operator
	// abandons the entry (`haroll recover --abandon`).
	Failure  string    `json:"failure,omitempty"`
	FailedAt time.Time `json:"failed_at,omitempty"`
}

// Journal reads and writes the entry in state_dir.
type Journal struct {
	dir   string
	fault func(Entry) error // tests: a write that fails
}

// Write replaces the entry atomically: write a temporary file, fsync it,
// rename it over the journal, fsync the directory.
func (j Journal) Write(e Entry) error {
	if j.fault != nil {
		if err := j.fault(e); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	if err := atomicfile.WriteJSON(filepath.Join(j.dir, journalFile), e); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Read returns the entry, or nil when no replacement was cut off.
func (j Journal) Read() (*Entry, error) {
	b, err := os.ReadFile(filepath.Join(j.dir, journalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("journal %s is corrupt (%v): fix or remove it after checking the slot by hand", filepath.Join(j.dir, journalFile), err)
	}
	return &e, nil
}

// Written is when the entry was last written.
func (j Journal) Written() (time.Time, error) {
	fi, err := os.Stat(filepath.Join(j.dir, journalFile))
	if err != nil {
		return time.Time{}, fmt.Errorf("journal: %w", err)
	}
	return fi.ModTime(), nil
}

// Clear removes the entry: the replacement ended, one way or the other.
func (j Journal) Clear() error {
	err := os.Remove(filepath.Join(j.dir, journalFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return atomicfile.SyncDir(j.dir)
}
