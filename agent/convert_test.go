package agent

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/agent/agentpb"
)

// allPhases and allResults are every Phase and Result the agent has; a new
// one must be added here, and to agent.proto
// (TestEveryPhaseConstantOfThePackageIsListed finds one left out).
var (
	allPhases = []Phase{PhasePreflight, PhaseDrain, PhaseStop, PhaseCreate, PhaseStart, PhaseBoot, PhaseAddress,
		PhaseGate, PhaseRestore, PhaseCleanup, PhaseRollback, PhaseSkip, PhaseRecover, PhasePull,
		PhasePreDrain, PhasePostReplace, PhaseTakeover}
	allResults = []Result{ResultReplaced, ResultSkipped, ResultRolledBack, ResultFailed, ResultNotRun}
)

func TestEveryPhaseHasAnEnumValueThatMapsBackToIt(t *testing.T) {
	seen := map[agentpb.Phase]bool{}
	for _, p := range allPhases {
		code := agentpb.PhaseFromName(string(p))
		if code == agentpb.Phase_PHASE_UNSPECIFIED || code.Name() != string(p) || seen[code] {
			t.Errorf("phase %q: enum %v, back %q", p, code, code.Name())
		}
		seen[code] = true
	}
	for v := range agentpb.Phase_name {
		if code := agentpb.Phase(v); code != agentpb.Phase_PHASE_UNSPECIFIED && !seen[code] {
			t.Errorf("agent.proto's %v is no agent.Phase", code)
		}
	}
}

func TestEveryResultHasAnEnumValueThatMapsBackToIt(t *testing.T) {
	seen := map[agentpb.SlotResult]bool{}
	for _, r := range allResults {
		code := agentpb.SlotResultFromName(string(r))
		if code == agentpb.SlotResult_SLOT_RESULT_UNSPECIFIED || code.Name() != string(r) || seen[code] {
			t.Errorf("result %q: enum %v, back %q", r, code, code.Name())
		}
		seen[code] = true
	}
	for v := range agentpb.SlotResult_name {
		if code := agentpb.SlotResult(v); code != agentpb.SlotResult_SLOT_RESULT_UNSPECIFIED && !seen[code] {
			t.Errorf("agent.proto's %v is no agent.Result", code)
		}
	}
}

func TestTheWireCarriesPhasesAndResultsAsEnumAndText(t *testing.T) {
	ev := EventToPB(Event{Slot: "web-1", Phase: PhasePostReplace, Start: time.Now()})
	if ev.GetPhase() != "post_replace" || ev.GetPhaseCode() != agentpb.Phase_PHASE_POST_REPLACE {
		t.Errorf("event: phase %q, code %v", ev.GetPhase(), ev.GetPhaseCode())
	}
	rep := ReportToPB(Report{Slots: []SlotReport{{Slot: "web-1", Result: ResultRolledBack}}}, nil)
	if s := rep.GetSlots()[0]; s.GetResult() != "rolled_back" || s.GetResultCode() != agentpb.SlotResult_SLOT_RESULT_ROLLED_BACK {
		t.Errorf("report: result %q, code %v", s.GetResult(), s.GetResultCode())
	}
	st := StatusToPB([]SlotStatus{{Slot: "web-1", Pending: &SlotPending{Phase: PhaseGate}}})
	if p := st[0].GetPending(); p.GetPhase() != "gate" || p.GetPhaseCode() != agentpb.Phase_PHASE_GATE {
		t.Errorf("pending: phase %q, code %v", p.GetPhase(), p.GetPhaseCode())
	}
}

func TestWhatAnAgentBeforeTheEnumsSendsReadsTheSame(t *testing.T) {
	ev := EventFromPB(&agentpb.PhaseEvent{Slot: "web-1", Phase: "drain"})
	rep, _ := ReportFromPB(&agentpb.Report{Slots: []*agentpb.SlotReport{{Slot: "web-1", Result: "skipped"}}})
	st := StatusFromPB([]*agentpb.SlotStatus{{Slot: "web-1", Pending: &agentpb.SlotPending{Phase: "boot"}}})
	if ev.Phase != PhaseDrain || rep.Slots[0].Result != ResultSkipped || st[0].Pending.Phase != PhaseBoot {
		t.Errorf("text only: phase %q, result %q, pending %q", ev.Phase, rep.Slots[0].Result, st[0].Pending.Phase)
	}
	// And the enums alone, as a later agent might send them.
	ev = EventFromPB(&agentpb.PhaseEvent{Slot: "web-1", PhaseCode: agentpb.Phase_PHASE_DRAIN})
	rep, _ = ReportFromPB(&agentpb.Report{Slots: []*agentpb.SlotReport{{Slot: "web-1", ResultCode: agentpb.SlotResult_SLOT_RESULT_SKIPPED}}})
	st = StatusFromPB([]*agentpb.SlotStatus{{Slot: "web-1", Pending: &agentpb.SlotPending{PhaseCode: agentpb.Phase_PHASE_BOOT}}})
	if ev.Phase != PhaseDrain || rep.Slots[0].Result != ResultSkipped || st[0].Pending.Phase != PhaseBoot {
		t.Errorf("enums only: phase %q, result %q, pending %q", ev.Phase, rep.Slots[0].Result, st[0].Pending.Phase)
	}
}

// TestEveryPhaseConstantOfThePackageIsListed reads the package's source for
// constants of type Phase, so that a new phase cannot miss its enum value.
func TestEveryPhaseConstantOfThePackageIsListed(t *testing.T) {
	fset := token.NewFileSet()
	listed := map[string]bool{}
	for _, p := range allPhases {
		listed[string(p)] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok || spec.Type == nil {
				return true
			}
			if id, ok := spec.Type.(*ast.Ident); !ok || id.Name != "Phase" {
				return true
			}
			for _, v := range spec.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					found++
					if value, _ := strconv.Unquote(lit.Value); !listed[value] {
						t.Errorf("%s: phase %s is not in allPhases (nor, probably, in agent.proto's enum Phase)", name, lit.Value)
					}
				}
			}
			return true
		})
	}
	if found < len(allPhases) {
		t.Errorf("found %d Phase constants in the source, fewer than the %d listed", found, len(allPhases))
	}
}
