package cli

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/rollout"
)

// newDecide is `haroll rollout promote` or `haroll rollout abort`: a
// person's decision for a canary, written in the rollout's store (next to
// its state file, or in etcd) for the coordinator that runs it (or a later
// --resume) to carry out.
func newDecide(decision, short string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   decision + " [--config coordinator.yaml | --state-file FILE]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var store rollout.Store
			if stateFile, _ := cmd.Flags().GetString("state-file"); stateFile != "" {
				store = rollout.NewFileStore(stateFile)
			} else {
				s, err := storeOf(cmd)
				if err != nil {
					return err
				}
				store = s
			}
			defer store.Close()
			st, err := rollout.DecideIn(cmd.Context(), store, decision, whoami())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			// Recorded means carried out: the coordinator takes it before it
			// could record a promotion (rollout.Decide).
			var what string
			if st.Paused != "" { // on_failure: pause
				fmt.Fprintf(out, "%s: recorded for the rollout of %s in %s, paused: %s\n", decision, st.Image, store, st.Paused)
				what = "the rollout stops; the failed hosts stay as they are"
				if decision == rollout.DecisionPromote {
					what = "the rollout goes on with its next batch, the failures so far accepted"
				}
			} else {
				fmt.Fprintf(out, "%s: recorded for the canary of %s in %s (canary %s)\n", decision, st.Image, store, st.Canary.Phase)
				if st.Canary.Verdict != "" {
					fmt.Fprintf(out, "  analysis: %s\n", st.Canary.Verdict)
				}
				what = "the canary hosts go back to their old image and the rollout stops"
				if decision == rollout.DecisionPromote {
					what = "the canary hosts get their whole weight and the rollout goes on"
				}
			}
			// The coordinator runs where it holds the fleet lock; a file
			// store's coordinator of an older haroll held none: its pid says.
			holder, _ := store.Status(cmd.Context())
			switch {
			case holder != nil:
				fmt.Fprintf(out, "  the coordinator (%s, %s) carries it out within a second: %s\n", holder.Holder, holder.RolloutID, what)
			case coordinatorRuns(st.PID) && isFileStore(store):
				fmt.Fprintf(out, "  the coordinator (pid %d) carries it out within a second: %s\n", st.PID, what)
			default:
				fmt.Fprintf(out, "  no coordinator holds the fleet lock: `haroll rollout --resume` carries it out: %s\n", what)
			}
			return nil
		},
	}
	cmd.Flags().String("config", defaultCoordinatorConfig, "coordinator configuration file (YAML): its store (state_file, or etcd) holds the rollout")
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

func isFileStore(s rollout.Store) bool {
	_, ok := s.(*rollout.FileStore)
	return ok
}
