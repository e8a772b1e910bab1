package rollout

import (
	"errors"
	"testing"

	"github.com/haroll/haroll/agent/agentpb"
)

func entry(seq uint64, slot, rollout string, token uint64, kind string, result agentpb.SlotResult, before, after string) *agentpb.HistoryEntry {
	return &agentpb.HistoryEntry{Seq: seq, Slot: slot, RolloutId: rollout, FenceToken: token, Kind: kind, ResultCode: result,
		ImageBefore: before, ImageAfter: after, RequestedImage: after}
}

// The rollback undoes the last fleet rollout only, pair by pair, from what
// each slot ran before it; slots it did not replace are left alone, and a
// rollback's own entries are not "the last rollout".
func TestPlanRollbackUndoesTheLastRolloutPairByPair(t *testing.T) {
	rep, skip, back := agentpb.SlotResult_SLOT_RESULT_REPLACED, agentpb.SlotResult_SLOT_RESULT_SKIPPED, agentpb.SlotResult_SLOT_RESULT_ROLLED_BACK
	hist := []HostHistory{
		{Host: "h1", Entries: []*agentpb.HistoryEntry{
			entry(1, "a", "r1", 10, KindRollout, rep, "app:v0", "app:v1"),
			entry(2, "a", "r2", 20, KindRollout, rep, "app:v1", "app:v2"),
			entry(3, "b", "r2", 20, KindRollout, rep, "app:v1", "app:v2"),
			entry(4, "b", "r3", 30, KindRollback, rep, "app:v2", "app:v1"), // b already rolled back by hand
		}},
		{Host: "h2", Entries: []*agentpb.HistoryEntry{
			entry(1, "a", "r2", 20, KindRollout, back, "app:v1", "app:v1"), // failed there: nothing to undo
			entry(2, "b", "r2", 20, KindRollout, skip, "app:v2", "app:v2"),
		}},
		{Host: "h3", Entries: []*agentpb.HistoryEntry{
			entry(7, "a", "", 0, "", rep, "app:v1", "app:hotfix"), // a person's redeploy
		}},
	}
	p, err := PlanRollback(hist)
	if err != nil {
		t.Fatal(err)
	}
	if p.RolloutID != "r2" || p.Image != "app:v2" {
		t.Errorf("rollback of %s (%s), want r2 (app:v2)", p.RolloutID, p.Image)
	}
	want := map[string]string{"h1/a": "app:v1"} // h1/b runs app:v1 already
	if len(p.Images) != len(want) || p.Images["h1/a"] != want["h1/a"] {
		t.Errorf("images %v, want %v", p.Images, want)
	}
	if len(p.Hosts) != 1 || p.Hosts[0] != "h1" {
		t.Errorf("hosts %v, want [h1]", p.Hosts)
	}

	hist = append(hist, HostHistory{Host: "h4", Err: errors.New("host h4: history: connection refused")})
	if _, err := PlanRollback(hist); err == nil {
		t.Error("a host whose history cannot be read is not an error")
	}
	if _, err := PlanRollback([]HostHistory{{Host: "h1"}}); !errors.Is(err, ErrNothingToRollBack) {
		t.Errorf("no rollout in any history: %v, want ErrNothingToRollBack", err)
	}
}
