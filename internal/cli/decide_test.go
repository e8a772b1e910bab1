package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haroll/haroll/rollout"
)

// decideOn runs `haroll rollout <decision> --state-file` on a state file
// whose canary is in phase, and returns what it printed and its error.
func decideOn(t *testing.T, decision, phase string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rollout.json")
	st := &rollout.State{Version: 1, Image: "app:v2", Slots: []string{"a"}, PID: os.Getpid(),
		Plan:   rollout.Plan{Batches: []rollout.Batch{{Hosts: []string{"h1"}, Canary: true}}},
		Canary: &rollout.CanaryState{Phase: phase}}
	if err := rollout.WriteState(path, st); err != nil {
		t.Fatal(err)
	}
	cmd := newDecide(decision, "")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--state-file", path})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func TestAnAcceptedDecisionSaysWhatTheCoordinatorWillDo(t *testing.T) {
	out, err := decideOn(t, rollout.DecisionAbort, rollout.CanaryAnalysis)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"abort: recorded", "carries it out within a second: the canary hosts go back to their old image and the rollout stops"} {
		if !strings.Contains(out, want) {
			t.Errorf("abort answered %q, want %q in it", out, want)
		}
	}
	out, err = decideOn(t, rollout.DecisionPromote, rollout.CanaryPaused)
	if err != nil || !strings.Contains(out, "the canary hosts get their whole weight and the rollout goes on") {
		t.Errorf("promote answered %q, %v", out, err)
	}
}

func TestAnAbortOnceTheCanaryIsBeingPromotedIsRefusedAsTooLate(t *testing.T) {
	out, err := decideOn(t, rollout.DecisionAbort, rollout.CanaryPromoting)
	if !errors.Is(err, rollout.ErrNoCanaryWaiting) || !strings.Contains(err.Error(), "too late to abort it") ||
		!strings.Contains(err.Error(), "already being promoted") || strings.Contains(out, "recorded") {
		t.Fatalf("answered %q, %v: want a refusal saying the canary is already being promoted", out, err)
	}
}
