package agentpb

import "strings"

// The text forms of Phase and SlotResult: each value's enum name without
// its prefix, in lower case (PHASE_POST_REPLACE is "post_replace",
// SLOT_RESULT_ROLLED_BACK "rolled_back"). They are what the string fields
// (PhaseEvent.phase, SlotPending.phase, SlotReport.result) carry for haroll
// versions before the enums, what the agent's and the coordinator's JSON
// output shows, and what SlotReport.phases is keyed by. This file is the one
// mapping both ways; agent and rollout use it rather than spelling the
// strings out.

const (
	phasePrefix  = "PHASE_"
	resultPrefix = "SLOT_RESULT_"
)

var (
	phaseByName  = byName(Phase_value, phasePrefix)
	resultByName = byName(SlotResult_value, resultPrefix)
)

// byName maps each text form to its value, UNSPECIFIED left out.
func byName(values map[string]int32, prefix string) map[string]int32 {
	out := make(map[string]int32, len(values))
	for name, v := range values {
		if v != 0 {
			out[strings.ToLower(strings.TrimPrefix(name, prefix))] = v
		}
	}
	return out
}

// textOf is name without prefix in lower case, or "" for UNSPECIFIED (v 0)
// and for a value this version does not know.
func textOf(names map[int32]string, v int32, prefix string) string {
	name, ok := names[v]
	if !ok || v == 0 {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

// Name is the phase's text form ("drain"); "" for PHASE_UNSPECIFIED or a
// value this version does not know.
func (p Phase) Name() string { return textOf(Phase_name, int32(p), phasePrefix) }

// PhaseFromName is the Phase whose text form is name; PHASE_UNSPECIFIED when
// there is none.
func PhaseFromName(name string) Phase { return Phase(phaseByName[name]) }

// Name is the result's text form ("rolled_back"); "" for
// SLOT_RESULT_UNSPECIFIED or a value this version does not know.
func (r SlotResult) Name() string { return textOf(SlotResult_name, int32(r), resultPrefix) }

// SlotResultFromName is the SlotResult whose text form is name;
// SLOT_RESULT_UNSPECIFIED when there is none.
func SlotResultFromName(name string) SlotResult { return SlotResult(resultByName[name]) }

// PhaseName is the event's phase as text: phase_code's text form when it is
// set, else the phase field, as an agent of an earlier haroll version sends
// it (or as a newer one sends a phase this version has no enum value for).
func (x *PhaseEvent) PhaseName() string {
	if n := x.GetPhaseCode().Name(); n != "" {
		return n
	}
	return x.GetPhase()
}

// PhaseName is the pending replacement's phase as text, as for
// PhaseEvent.PhaseName.
func (x *SlotPending) PhaseName() string {
	if n := x.GetPhaseCode().Name(); n != "" {
		return n
	}
	return x.GetPhase()
}

// ResultName is the slot's result as text: result_code's text form when it
// is set, else the result field, as an agent of an earlier haroll version
// sends it.
func (x *SlotReport) ResultName() string {
	if n := x.GetResultCode().Name(); n != "" {
		return n
	}
	return x.GetResult()
}
