package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// historyFile records every slot result of every redeploy on this host, one
// JSON object (HistoryEntry) a line, oldest first. Lines are appended (and
// synced) under the host lock, before the redeploy's report goes out; a
// crash may leave a torn last line, which readers skip. It is compacted to
// the newest history.max_per_slot entries of each slot once it holds more
// than twice that many in all.
const historyFile = "history.jsonl"

// DefaultHistoryPerSlot is history.max_per_slot when the configuration does
// not set it.
const DefaultHistoryPerSlot = 200

// HistoryEntry is one slot's result in one redeploy (agentpb.HistoryEntry).
type HistoryEntry struct {
	// Seq rises with every entry the host records, across restarts.
	Seq   uint64    `json:"seq"`
	Slot  string    `json:"slot"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// What the slot ran before and runs after; digests are Docker image
	// IDs, "" when unknown (after a rollback that did not complete).
	ImageBefore  string `json:"image_before,omitempty"`
	DigestBefore string `json:"digest_before,omitempty"`
	ImageAfter   string `json:"image_after,omitempty"`
	DigestAfter  string `json:"digest_after,omitempty"`
	// Origin: the request's origin and, in parentheses, the caller (its
	// certificate name, or "local").
	Origin     string `json:"origin"`
	RolloutID  string `json:"rollout_id,omitempty"`
	FenceToken uint64 `json:"fence_token,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Result     Result `json:"result"`
	Err        string `json:"error,omitempty"`
	// Strategy: start-first or stop-first, or for a blue/green slot
	// "blue-green LIVE->IDLE" (the server that served before, the one the new
	// container came up behind); "" when nothing was replaced.
	Strategy       string                  `json:"strategy,omitempty"`
	Phases         map[Phase]time.Duration `json:"phases_ns,omitempty"`
	Total          time.Duration           `json:"total_ns"`
	RequestedImage string                  `json:"requested_image"`
}

// HistoryQuery selects entries (agentpb.HistoryRequest).
type HistoryQuery struct {
	Slot      string
	RolloutID string
	// Limit: at most this many, the newest; 0 is every one kept.
	Limit int
}

// History returns the recorded entries q selects, newest first.
func (a *Agent) History(q HistoryQuery) ([]HistoryEntry, error) {
	all, _, err := a.readHistory()
	if err != nil {
		return nil, err
	}
	all = keepNewest(all, a.historyBound())
	var out []HistoryEntry
	for _, e := range slices.Backward(all) {
		if (q.Slot != "" && e.Slot != q.Slot) || (q.RolloutID != "" && e.RolloutID != q.RolloutID) {
			continue
		}
		out = append(out, e)
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	return out, nil
}

func (a *Agent) historyBound() int {
	if a.cfg.History.MaxPerSlot <= 0 {
		return DefaultHistoryPerSlot
	}
	return a.cfg.History.MaxPerSlot
}

// history appends entries to the host's history: numbered after the last
// one recorded, written in one append and synced. The caller holds the host
// lock for as long as it uses a history, so no other process appends or
// compacts meanwhile: the file is read once, at the first record.
type history struct {
	a *Agent
	// all is what the file holds, once read (loaded); torn: it ends in a
	// torn line.
	all    []HistoryEntry
	torn   bool
	loaded bool
}

// record appends e, numbered, and compacts the file when it holds more than
// twice the bound. A failure is returned; the replacement it records is
// done either way.
func (h *history) record(e HistoryEntry) error {
	path := filepath.Join(h.a.cfg.StateDir, historyFile)
	if !h.loaded {
		all, torn, err := h.a.readHistory()
		if err != nil {
			return err
		}
		h.all, h.torn, h.loaded = all, torn, true
	}
	e.Seq = 1
	if n := len(h.all); n > 0 {
		e.Seq = h.all[n-1].Seq + 1
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if h.torn {
		// A crash cut the last line short: end it, so that this entry is a
		// line of its own.
		line = append([]byte("\n"), line...)
	}
	if err := appendSynced(path, append(line, '\n')); err != nil {
		h.loaded = false // what reached the file is unknown: read it again
		return fmt.Errorf("history %s: %w", path, err)
	}
	h.torn = false
	h.all = append(h.all, e)
	if len(h.all) > 2*h.a.historyBound()*max(1, countSlots(h.all)) {
		keep := keepNewest(h.all, h.a.historyBound())
		if err := writeHistory(path, keep); err != nil {
			return fmt.Errorf("history %s: compacting: %w", path, err)
		}
		h.all = keep
	}
	return nil
}

// appendSynced appends b to path (created if needed) and syncs it, and the
// directory when the file is new.
func appendSynced(path string, b []byte) error {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && errors.Is(statErr, fs.ErrNotExist) {
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	return err
}

// writeHistory replaces the file with entries: temporary file, sync,
// rename, directory sync.
func writeHistory(path string, entries []HistoryEntry) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return atomicfile.Write(path, buf.Bytes())
}

// readHistory returns the recorded entries, oldest first, and whether the
// file ends in a torn line (no newline: a crash during an append). Lines
// that are not an entry are skipped.
func (a *Agent) readHistory() ([]HistoryEntry, bool, error) {
	path := filepath.Join(a.cfg.StateDir, historyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("history: %w", err)
	}
	torn := len(b) > 0 && b[len(b)-1] != '\n'
	var out []HistoryEntry
	r := bufio.NewReader(bytes.NewReader(b))
	skipped := 0
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var e HistoryEntry
			if jerr := json.Unmarshal(line, &e); jerr != nil || e.Seq == 0 {
				skipped++
			} else {
				out = append(out, e)
			}
		}
		if err == io.EOF {
			break
		}
	}
	if skipped > 1 || (skipped == 1 && !torn) {
		a.log.Warn("history: skipped lines that are no entry", "file", path, "lines", skipped)
	}
	return out, torn, nil
}

// keepNewest keeps the newest n entries of each slot, in order.
func keepNewest(all []HistoryEntry, n int) []HistoryEntry {
	seen := map[string]int{}
	keep := make([]bool, len(all))
	kept := 0
	for i := len(all) - 1; i >= 0; i-- {
		if seen[all[i].Slot] < n {
			seen[all[i].Slot]++
			keep[i] = true
			kept++
		}
	}
	if kept == len(all) {
		return all
	}
	out := make([]HistoryEntry, 0, kept)
	for i, e := range all {
		if keep[i] {
			out = append(out, e)
		}
	}
	return out
}

func countSlots(all []HistoryEntry) int {
	slots := map[string]bool{}
	for _, e := range all {
		slots[e.Slot] = true
	}
	return len(slots)
}

// recordHistory records the outcome r of plan p, which began at start. A
// record that cannot be written is logged: the slot's replacement is done
// either way, and its report says how it went.
func (a *Agent) recordHistory(h *history, req Request, p plan, r replaceResult, start time.Time) {
	e := HistoryEntry{Slot: p.slot.Name, Start: start, End: time.Now(),
		ImageBefore: p.old.Image, DigestBefore: p.old.ImageID,
		Origin: originOf(req), Result: r.report.Result, Err: r.report.Err,
		Total: r.report.Total, RequestedImage: req.Image}
	if f := req.Fence; f != nil {
		e.RolloutID, e.FenceToken, e.Kind = f.RolloutID, f.Token, f.Kind
	}
	if len(r.report.Phases) > 0 {
		e.Phases = r.report.Phases
	}
	switch {
	case r.report.Result == ResultReplaced, r.report.Result == ResultFailed && r.proven:
		e.ImageAfter, e.DigestAfter = req.Image, p.imageID
	case r.report.Result == ResultSkipped, r.report.Result == ResultRolledBack:
		e.ImageAfter, e.DigestAfter = e.ImageBefore, e.DigestBefore
	}
	if r.report.Result != ResultSkipped {
		e.Strategy = StrategyStopFirst
		if p.startFirst {
			e.Strategy = StrategyStartFirst
		}
		switch {
		case p.canaryPair != nil:
			e.Strategy = StrategyBlueGreen + " undo canary " + p.pair.idle + "->" + p.pair.live
		case p.pair != nil && p.canary:
			e.Strategy = StrategyBlueGreen + " canary " + p.pair.idle + " beside " + p.pair.live
		case p.pair != nil:
			e.Strategy = StrategyBlueGreen + " " + p.pair.live + "->" + p.pair.idle
		}
	}
	if err := h.record(e); err != nil {
		a.log.Error("the slot's result is not in the host's history", "slot", e.Slot, "result", e.Result, "error", err)
	}
}

// originOf is the request's origin and, in parentheses, its caller.
func originOf(req Request) string {
	switch {
	case req.Caller == "":
		return req.Origin
	case req.Origin == "":
		return "(" + req.Caller + ")"
	}
	return req.Origin + " (" + req.Caller + ")"
}
