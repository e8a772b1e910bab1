package cli

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/rollout"
)

// newDecide is `haroll rollout promote` or `haroll rollout abort`: a
// person's decision for a canary, written next to the rollout's state file
// for the coordinator that runs it (or a later --resume) to carry out.
func newDecide(decision, short string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   decision + " [--config coordinator.yaml | --state-file FILE]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stateFile, _ := cmd.Flags().GetString("state-file")
			if stateFile == "" {
				cfg, err := loadCoordinatorConfig(cmd)
				if err != nil {
					return err
				}
				stateFile = cfg.StateFile
			}
			st, err := rollout.Decide(stateFile, decision, whoami())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: recorded for the canary of %s in %s (canary %s)\n", decision, st.Image, stateFile, st.Canary.Phase)
			if st.Canary.Verdict != "" {
				fmt.Fprintf(out, "  analysis: %s\n", st.Canary.Verdict)
			}
			// Recorded means carried out: the coordinator takes it before it
			// could record a promotion (rollout.Decide).
			what := "the canary hosts go back to their old image and the rollout stops"
			if decision == rollout.DecisionPromote {
				what = "the canary hosts get their whole weight and the rollout goes on"
			}
			if coordinatorRuns(st.PID) {
				fmt.Fprintf(out, "  the coordinator (pid %d) carries it out within a second: %s\n", st.PID, what)
			} else {
				fmt.Fprintf(out, "  the coordinator (pid %d) is not running: `haroll rollout --resume` carries it out: %s\n", st.PID, what)
			}
			return nil
		},
	}
	cmd.Flags().String("config", defaultCoordinatorConfig, "coordinator configuration file (YAML): its state_file names the rollout")
	cmd.Flags().String("state-file", "", "the rollout's state file (instead of the one --config names)")
	cmd.Flags().Bool("insecure", false, "as for rollout: lets a --config without TLS files load")
	return cmd
}

// coordinatorRuns reports whether a process with pid exists (on this host).
func coordinatorRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
