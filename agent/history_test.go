package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEverySlotResultIsRecordedWithEveryField(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7), w.addSlot("app-2", 3))
	f := fence(21, "r21")
	f.Kind = "rollback"
	begin := time.Now()
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-1"}, Origin: "rollout by alice@ops", Caller: "coordinator", Fence: f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.History(HistoryQuery{})
	if err != nil || len(got) != 1 {
		t.Fatalf("history %+v, %v: want one entry", got, err)
	}
	e := got[0]
	if e.Seq != 1 || e.Slot != "app-1" || e.Start.Before(begin) || !e.End.After(e.Start) ||
		e.ImageBefore != "app:v1" || e.DigestBefore != "sha256:v1" || e.ImageAfter != "app:v2" || e.DigestAfter != "sha256:v2" ||
		e.Origin != "rollout by alice@ops (coordinator)" || e.RolloutID != "r21" || e.FenceToken != 21 || e.Kind != "rollback" ||
		e.Result != ResultReplaced || e.Err != "" || e.Strategy != StrategyStopFirst || e.Phases[PhaseDrain] <= 0 || e.Phases[PhaseGate] <= 0 ||
		e.Total <= 0 || e.RequestedImage != "app:v2" {
		t.Fatalf("entry %+v", e)
	}
	// Every field of the type is set by some entry: a field added to
	// HistoryEntry must be filled (or this list told why not).
	v := reflect.ValueOf(e)
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; v.Field(i).IsZero() && name != "Err" {
			t.Errorf("field %s is not filled", name)
		}
	}

	// Skipped, and rolled back (with the error): after = before.
	if _, err := a.Claim(ClaimRequest{Fence: *f, Release: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2", Origin: "redeploy by bob", Caller: "local"}, nil); err != nil {
		t.Fatal(err)
	}
	a.cfg.Health.Timeout = 200 * time.Millisecond // the broken image never gets healthy
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:broken", Slots: []string{"app-2"}, Origin: "redeploy by bob", Caller: "local"}, nil); err == nil {
		t.Fatal("a broken image was not refused")
	}
	got, _ = a.History(HistoryQuery{})
	if len(got) != 4 {
		t.Fatalf("%d entries, want 4: %+v", len(got), got)
	}
	rb, skipped := got[0], got[2]
	if skipped.Slot != "app-1" || skipped.Result != ResultSkipped || skipped.ImageAfter != "app:v2" || skipped.DigestAfter != "sha256:v2" || skipped.Strategy != "" || skipped.Origin != "redeploy by bob (local)" {
		t.Errorf("skipped entry %+v", skipped)
	}
	if rb.Seq != 4 || rb.Slot != "app-2" || rb.Result != ResultRolledBack || rb.Err == "" || rb.ImageBefore != "app:v2" || rb.ImageAfter != "app:v2" || rb.DigestAfter != "sha256:v2" || rb.RequestedImage != "app:broken" || rb.RolloutID != "" || rb.FenceToken != 0 {
		t.Errorf("rolled back entry %+v", rb)
	}
}

func TestHistoryFiltersNewestFirst(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7), w.addSlot("app-2", 3))
	h := &history{a: a}
	for i, slot := range []string{"app-1", "app-2", "app-1", "app-2", "app-1"} {
		e := HistoryEntry{Slot: slot, Result: ResultReplaced, RequestedImage: "app:v2"}
		if i >= 3 {
			e.RolloutID = "r2"
		}
		if err := h.record(e); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(q HistoryQuery) []uint64 {
		got, err := a.History(q)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, e := range got {
			out = append(out, e.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		q    HistoryQuery
		want []uint64
	}{
		{HistoryQuery{}, []uint64{5, 4, 3, 2, 1}},
		{HistoryQuery{Slot: "app-1"}, []uint64{5, 3, 1}},
		{HistoryQuery{Slot: "app-1", Limit: 2}, []uint64{5, 3}},
		{HistoryQuery{RolloutID: "r2"}, []uint64{5, 4}},
		{HistoryQuery{Slot: "app-2", RolloutID: "r2"}, []uint64{4}},
		{HistoryQuery{Slot: "nope"}, nil},
	} {
		if got := seqs(tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: seqs %v, want %v", tc.q, got, tc.want)
		}
	}
}

func historyLines(t *testing.T, a *Agent) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, historyFile))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func TestTheHistoryKeepsTheNewestEntriesOfEachSlotAndCompacts(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7), w.addSlot("app-2", 3))
	a.cfg.History.MaxPerSlot = 3
	h := &history{a: a}
	// app-2 once, then app-1 eleven times: the file is compacted when it
	// holds more than 2*3*2 = 12 entries.
	if err := h.record(HistoryEntry{Slot: "app-2", Result: ResultReplaced}); err != nil {
		t.Fatal(err)
	}
	for range 11 {
		if err := h.record(HistoryEntry{Slot: "app-1", Result: ResultReplaced}); err != nil {
			t.Fatal(err)
		}
	}
	if n := historyLines(t, a); n != 12 {
		t.Fatalf("%d lines before the bound, want 12", n)
	}
	got, _ := a.History(HistoryQuery{Slot: "app-1"})
	if len(got) != 3 || got[0].Seq != 12 || got[2].Seq != 10 {
		t.Fatalf("app-1's history %+v: want its newest 3 entries, 12..10, even before a compaction", got)
	}
	if err := h.record(HistoryEntry{Slot: "app-1", Result: ResultReplaced}); err != nil {
		t.Fatal(err)
	}
	if n := historyLines(t, a); n != 4 {
		t.Fatalf("%d lines after the compaction, want 3 of app-1 and 1 of app-2", n)
	}
	got, _ = a.History(HistoryQuery{})
	var seqs []uint64
	for _, e := range got {
		seqs = append(seqs, e.Seq)
	}
	if !reflect.DeepEqual(seqs, []uint64{13, 12, 11, 1}) {
		t.Fatalf("seqs after the compaction %v, want [13 12 11 1]", seqs)
	}
	// Numbering goes on after a compaction and a restart.
	b := reopen(t, w, a)
	if _, err := b.Redeploy(context.Background(), Request{Image: "app:v2", Slots: []string{"app-2"}}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.History(HistoryQuery{Limit: 1}); len(got) != 1 || got[0].Seq != 14 || got[0].Slot != "app-2" {
		t.Fatalf("after a restart %+v: want seq 14", got)
	}
	entries, _ := os.ReadDir(a.cfg.StateDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "."+historyFile) {
			t.Errorf("compaction left %s", e.Name())
		}
	}
}

func TestATornLastLineIsIgnoredAndTheNextEntryStartsALineOfItsOwn(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	h := &history{a: a}
	for range 2 {
		if err := h.record(HistoryEntry{Slot: "app-1", Result: ResultReplaced}); err != nil {
			t.Fatal(err)
		}
	}
	// A crash in the middle of the third append.
	f, err := os.OpenFile(filepath.Join(a.cfg.StateDir, historyFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"slot":"app-1","start":"2026-12-`)
	f.Close()
	b := reopen(t, w, a)
	got, err := b.History(HistoryQuery{})
	if err != nil || len(got) != 2 || got[0].Seq != 2 {
		t.Fatalf("history with a torn line: %+v, %v: want entries 2 and 1", got, err)
	}
	if _, err := b.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
	got, err = b.History(HistoryQuery{})
	if err != nil || len(got) != 3 || got[0].Seq != 3 || got[0].Result != ResultReplaced || got[0].RequestedImage != "app:v2" {
		t.Fatalf("history after an append past a torn line: %+v, %v", got, err)
	}
}
