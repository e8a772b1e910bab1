package rollout

// The state file on disk, version 2: a snapshot and a log beside it.
//
// <state_file> is the snapshot: the State as JSON (version 2), written
// atomically (temporary file, fsync, rename, directory fsync), with the
// pairs finished when it was written and a generation number.
//
// <state_file>.log is what happened since, one record a line, appended and
// fsynced in groups (see stateWriter):
//
//	crc32c(json) as 8 hex digits, a space, json, a newline
//
// Its first record is the header {"log":2,"generation":G}; then each
// record holds one of "pair" (a finished PairResult), "canary" (the whole
// CanaryState after a change), "complete" (the outcome and why the rollout
// stopped), with the time it was written in "at".
//
// A reader takes the snapshot, then the log if its generation is the
// snapshot's: a log of an older generation is left from a compaction cut
// short after its snapshot was written, and holds nothing the snapshot
// lacks; a newer one means a compaction happened between the two reads, and
// the reader reads again. Records are applied in order; a pair already known
// is replaced (the last record of a (host, slot) wins), so a record both in
// a snapshot and in the log after it counts once. A last line that is cut
// short or fails its checksum is a write a crash interrupted (never
// acknowledged: its writers were still waiting for the fsync) and is
// ignored; a bad line followed by a good one is corruption, and reading
// fails with an error that names the file and the line.
//
// Compaction writes a new log (header G+1) as <state_file>.log.tmp, then the
// snapshot of generation G+1 with every pair, then renames the new log over
// the old one. A crash before the snapshot leaves generation G whole; after
// it, the snapshot G+1 has everything and the log G is stale; so no point
// of it loses or doubles a record.
//
// Version 1 (a single JSON file with every pair, written whole after each
// one) is still read, for a --resume of a rollout an older haroll started;
// the resume writes version 2.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// stateVersion is the layout the coordinator writes; stateVersionV1 the
// older one it still reads.
const (
	stateVersion   = 2
	stateVersionV1 = 1
)

// logSuffix and tmpSuffix name the log beside a state file, and the new
// log a compaction prepares.
const (
	logSuffix = ".log"
	tmpSuffix = ".tmp"
)

// readRetries bounds how often a reader reads again when a compaction
// replaced the log between its reads of the snapshot and of the log.
const readRetries = 5

// StateLog is the log of the state file at path.
func StateLog(path string) string { return path + logSuffix }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// logRecord is one line of the log: a header (Log and Generation set) or
// exactly one of Pair, Canary, Complete, Paused, RollingBack.
type logRecord struct {
	Log        int          `json:"log,omitempty"`
	Generation uint64       `json:"generation,omitempty"`
	At         time.Time    `json:"at,omitzero"`
	Pair       *PairResult  `json:"pair,omitempty"`
	Canary     *CanaryState `json:"canary,omitempty"`
	Complete   *completion  `json:"complete,omitempty"`
	// Paused: the rollout waits for a decision after its failures passed
	// max_failures (on_failure: pause), or no longer does (Why empty).
	Paused *pausing `json:"paused,omitempty"`
	// RollingBack: on_failure: rollback began putting the earlier batches
	// back, why (a resume finishes it).
	RollingBack *pausing `json:"rolling_back,omitempty"`
}

// pausing is State.Paused.
type pausing struct {
	Why string `json:"why"`
}

// completion is how a rollout ended, as State.Outcome and State.Stopped.
type completion struct {
	Outcome string `json:"outcome"`
	Stopped string `json:"stopped,omitempty"`
}

// encodeRecord is rec as one line of the log.
func encodeRecord(rec logRecord) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	line := make([]byte, 0, len(b)+10)
	line = fmt.Appendf(line, "%08x ", crc32.Checksum(b, crcTable))
	line = append(line, b...)
	return append(line, '\n'), nil
}

// decodeRecord parses one line of the log (without its newline).
func decodeRecord(line []byte) (logRecord, error) {
	var rec logRecord
	if len(line) < 10 || line[8] != ' ' {
		return rec, errors.New("no checksum")
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil {
		return rec, errors.New("no checksum")
	}
	body := line[9:]
	if got := crc32.Checksum(body, crcTable); got != uint32(want) {
		return rec, fmt.Errorf("checksum %08x, the line's is %08x", got, want)
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		return rec, err
	}
	return rec, nil
}

// readLog reads the log at path: its generation and records. A torn last
// line is left out; a bad line before a good one is an error. A missing log
// is an error wrapping fs.ErrNotExist.
func readLog(path string) (uint64, []logRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	var recs []logRecord
	var bad error
	badLine := 0
	for n := 1; len(b) > 0; n++ {
		line, rest, whole := bytes.Cut(b, []byte{'\n'})
		b = rest
		rec, err := decodeRecord(line)
		if err == nil && !whole {
			err = errors.New("no newline")
		}
		switch {
		case err != nil && bad == nil:
			bad, badLine = err, n
		case err == nil && bad != nil:
			return 0, nil, fmt.Errorf("state log %s: line %d is corrupt (%v), yet line %d after it is whole: the file was damaged, not cut short by a crash; restore it from a backup, or remove it and the state file to start over", path, badLine, bad, n)
		case err == nil:
			recs = append(recs, rec)
		}
	}
	if len(recs) == 0 || recs[0].Log == 0 {
		return 0, nil, fmt.Errorf("state log %s: no header line: remove it and the state file to start over", path)
	}
	if recs[0].Log != stateVersion {
		return 0, nil, fmt.Errorf("state log %s: version %d, this haroll reads version %d", path, recs[0].Log, stateVersion)
	}
	return recs[0].Generation, recs[1:], nil
}

// peekLogGeneration is the generation in the header of the log at path;
// 0 when there is none or it cannot be read.
func peekLogGeneration(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	buf := make([]byte, 256)
	n, _ := f.Read(buf)
	line, _, _ := bytes.Cut(buf[:n], []byte{'\n'})
	rec, err := decodeRecord(line)
	if err != nil {
		return 0
	}
	return rec.Generation
}

// loadState reads the state at path: the snapshot and, for version 2, the
// log beside it.
func loadState(path string) (*State, error) {
	for try := 0; ; try++ {
		s, err := readSnapshot(path)
		if err != nil || s.Version == stateVersionV1 {
			return s, err
		}
		gen, recs, err := readLog(StateLog(path))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return s, nil // written by WriteState, or before a first record
		case err != nil:
			return nil, err
		case gen < s.Generation:
			return s, nil // stale: a compaction was cut short after its snapshot
		case gen > s.Generation && try < readRetries:
			time.Sleep(10 * time.Millisecond) // compacted between the two reads
			continue
		case gen > s.Generation:
			return nil, fmt.Errorf("state file %s: generation %d, its log %s has %d: they do not belong together; remove both to start over", path, s.Generation, StateLog(path), gen)
		}
		d := newDoneIndex(s)
		for _, rec := range recs {
			d.apply(s, rec)
		}
		return s, nil
	}
}

// readSnapshot reads and checks the snapshot at path (of version 1 or 2).
func readSnapshot(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	return parseSnapshot(b, "state file "+path)
}

// parseSnapshot parses and checks a snapshot read from where.
func parseSnapshot(b []byte, where string) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if s.Version != stateVersion && s.Version != stateVersionV1 {
		return nil, fmt.Errorf("%s: version %d, this haroll reads versions %d and %d", where, s.Version, stateVersionV1, stateVersion)
	}
	// A rollback to each slot's previous image has per-pair Images instead.
	if s.Image == "" && len(s.Images) == 0 || len(s.Slots) == 0 || len(s.Plan.Batches) == 0 {
		return nil, fmt.Errorf("%s: no image, slot or plan recorded", where)
	}
	return &s, nil
}

// doneIndex finds a pair in State.Done, so that a pair's record in the log
// replaces the one before it (in the snapshot, or earlier in the log).
type doneIndex map[[2]string]int

func newDoneIndex(s *State) doneIndex {
	d := make(doneIndex, len(s.Done))
	for i, p := range s.Done {
		d[[2]string{p.Host, p.Slot}] = i
	}
	return d
}

// apply adds rec to s.
func (d doneIndex) apply(s *State, rec logRecord) {
	switch {
	case rec.Pair != nil:
		k := [2]string{rec.Pair.Host, rec.Pair.Slot}
		if i, ok := d[k]; ok {
			s.Done[i] = *rec.Pair
		} else {
			d[k] = len(s.Done)
			s.Done = append(s.Done, *rec.Pair)
		}
	case rec.Canary != nil:
		s.Canary = rec.Canary
	case rec.Complete != nil:
		s.Complete, s.Outcome, s.Stopped = true, rec.Complete.Outcome, rec.Complete.Stopped
	case rec.Paused != nil:
		s.Paused = rec.Paused.Why
	case rec.RollingBack != nil:
		s.RollingBack = rec.RollingBack.Why
	}
	if !rec.At.IsZero() {
		s.Updated = rec.At
	}
}

// stateFiles are the open files of a version 2 state: the log appended to,
// and how much it holds against the snapshot.
type stateFiles struct {
	path     string
	log      *os.File
	gen      uint64
	records  int // in the log, after its header
	snapshot int // pairs in the snapshot
}

// fileBackend writes a rollout's state as the state file at path and the
// log beside it.
type fileBackend struct {
	path string
	// lease, if set, is checked before every write: a coordinator whose
	// lock was released by hand (`haroll rollout lock release`) must not
	// write over the state of the rollout that took the lock since (etcd's
	// writes are guarded by the lock key itself).
	lease Lease
}

// leaseCheckWrite bounds a file lease's check before a write (a read of
// the lock's info beside the state file).
const leaseCheckWrite = 5 * time.Second

func (b fileBackend) check() error {
	if b.lease == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseCheckWrite)
	defer cancel()
	return b.lease.Check(ctx)
}

func (b fileBackend) generation(s *State, prev uint64) (stateLog, error) {
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("state file %s: not written: %w", b.path, err)
	}
	f, err := writeGeneration(b.path, s, prev)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	if b.lease == nil {
		return f, nil
	}
	return leasedLog{f, b}, nil
}

// leasedLog is a state file's log appended to only while the lease holds.
type leasedLog struct {
	*stateFiles
	b fileBackend
}

func (l leasedLog) append(lines []byte, n int) error {
	if err := l.b.check(); err != nil {
		return fmt.Errorf("state log %s: not written: %w", StateLog(l.b.path), err)
	}
	return l.stateFiles.append(lines, n)
}

func (b fileBackend) String() string { return "state file " + b.path }

// minCompaction is the fewest log records that make a compaction worth it
// (a variable for tests).
var minCompaction = 4096

// Test hooks: testHookCompaction, when set, is called between the steps of
// writing a generation (after "log", "snapshot", "rename"), and an error
// stops there, as a crash would; testHookAppend is called before each
// group commit's write, and an error fails it.
var (
	testHookCompaction func(step string) error
	testHookAppend     func() error
)

// writeGeneration writes s whole as a new generation of the state at path:
// a new log holding only its header, the snapshot, then the log renamed in
// place (see the file's comment for why that order). It returns the files
// to append to; prev is the generation s was read at (0: unknown).
func writeGeneration(path string, s *State, prev uint64) (*stateFiles, error) {
	gen := max(prev, s.Generation, peekLogGeneration(StateLog(path))) + 1
	hook := func(step string) error {
		if testHookCompaction == nil {
			return nil
		}
		return testHookCompaction(step)
	}
	tmp := StateLog(path) + tmpSuffix
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("state log %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
		}
	}()
	header, err := encodeRecord(logRecord{Log: stateVersion, Generation: gen})
	if err == nil {
		_, err = f.Write(header)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = hook("log")
	}
	if err != nil {
		return nil, fmt.Errorf("state log %s: %w", tmp, err)
	}
	snap := *s
	snap.Version, snap.Generation = stateVersion, gen
	b, err := json.Marshal(&snap)
	if err == nil {
		err = atomicfile.Write(path, b)
	}
	if err == nil {
		err = hook("snapshot")
	}
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	err = os.Rename(tmp, StateLog(path))
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	if err == nil {
		err = hook("rename")
	}
	if err != nil {
		return nil, fmt.Errorf("state log %s: %w", StateLog(path), err)
	}
	s.Version, s.Generation = stateVersion, gen
	ok = true
	return &stateFiles{path: path, log: f, gen: gen, snapshot: len(s.Done)}, nil
}

// append writes the lines of n records to the log with one write and one
// fsync.
func (f *stateFiles) append(lines []byte, n int) error {
	if testHookAppend != nil {
		if err := testHookAppend(); err != nil {
			return fmt.Errorf("state log %s: %w", StateLog(f.path), err)
		}
	}
	if _, err := f.log.Write(lines); err != nil {
		return fmt.Errorf("state log %s: %w", StateLog(f.path), err)
	}
	if err := f.log.Sync(); err != nil {
		return fmt.Errorf("state log %s: %w", StateLog(f.path), err)
	}
	f.records += n
	return nil
}

// due reports whether the log holds enough to compact: as many records as
// the snapshot has pairs, and at least minCompaction, so the bytes written
// stay proportional to the pairs however many there are.
func (f *stateFiles) due() bool {
	return f.records >= max(minCompaction, f.snapshot)
}

func (f *stateFiles) close() error { return f.log.Close() }

func (f *stateFiles) generation() uint64 { return f.gen }
