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
	// Pair: the entry is one half of a blue/green slot's redeploy (a
	// surge of the new side, or the retirement of the old one), in its own
	// journal file (pairJournal).
	Pair *PairEntry `json:"pair,omitempty"`
}

// PairEntry is what a blue/green slot's journal adds to an Entry.
type PairEntry struct {
	// Live is the server that served before the redeploy (the old
	// container's), Idle the one the new container comes up behind.
	Live string `json:"live"`
	Idle string `json:"idle"`
	// IdleWeight is the idle server's weight before the surge, given back
	// (in maintenance) when the surge is undone.
	IdleWeight int `json:"idle_weight"`
	// StateFile is where the servers' states are saved for HAProxy's
	// reloads ("" none).
	StateFile string `json:"state_file,omitempty"`
}

// Journal reads and writes the entry in state_dir.
type Journal struct {
	dir   string
	fault func(Entry) error // tests: a write that fails
	// name is the file, journalFile when empty. The sides of a blue/green
	// slot have their own (pairJournal), since several of a host's pairs
	// may be in their surge or retirement at once (max_surge).
	name string
}

func (j Journal) path() string {
	if j.name == "" {
		return filepath.Join(j.dir, journalFile)
	}
	return filepath.Join(j.dir, j.name)
}

// Write replaces the entry atomically: write a temporary file, fsync it,
// rename it over the journal, fsync the directory.
func (j Journal) Write(e Entry) error {
	if j.fault != nil {
		if err := j.fault(e); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	if err := atomicfile.WriteJSON(j.path(), e); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Read returns the entry, or nil when no replacement was cut off.
func (j Journal) Read() (*Entry, error) {
	b, err := os.ReadFile(j.path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("journal %s is corrupt (%v): fix or remove it after checking the slot by hand", j.path(), err)
	}
	return &e, nil
}

// Written is when the entry was last written.
func (j Journal) Written() (time.Time, error) {
	fi, err := os.Stat(j.path())
	if err != nil {
		return time.Time{}, fmt.Errorf("journal: %w", err)
	}
	return fi.ModTime(), nil
}

// Clear removes the entry: the replacement ended, one way or the other.
func (j Journal) Clear() error {
	err := os.Remove(j.path())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return atomicfile.SyncDir(j.dir)
}
