package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/agent"
)

func newRedeploy() *cobra.Command {
	var (
		image      string
		slots      []string
		force      bool
		breakClaim bool
		maxSurge   int
		output     string
	)
	cmd := &cobra.Command{
		Use:   "redeploy --image IMAGE [--slot NAME]...",
		Short: "Replace this host's slot containers with IMAGE, one slot at a time",
		Long: `redeploy runs the replacement in-process on this host: for each slot, in
config order, it drains the HAProxy server, replaces the container, proves the
new one healthy (Docker health, its own probe, a fresh HAProxy check) and gives
the original weight back. A failure rolls the slot back and stops.

While a fleet rollout claims the host (haroll status shows it), redeploy is
refused, unless --break-claim.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if image == "" {
				return usageError("--image is required")
			}
			if maxSurge < 0 {
				return usageError("--max-surge %d: want how many blue/green slots may be in their surge at once (1 or more; 0 leaves the agent's max_surge)", maxSurge)
			}
			a, closeAgent, err := prepare(cmd, output)
			if err != nil {
				return err
			}
			defer closeAgent()
			progress := cmd.ErrOrStderr()
			if output == "text" {
				progress = cmd.OutOrStdout()
			}
			req := agent.Request{Image: image, Slots: slots, Force: force, Origin: "redeploy by " + whoami(), BreakClaim: breakClaim, MaxSurge: maxSurge}
			rep, err := a.Redeploy(cmd.Context(), req, func(e agent.Event) { printEvent(progress, e) })
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				out := struct {
					agent.Report
					Error string `json:"error,omitempty"`
				}{Report: rep}
				if err != nil {
					out.Error = err.Error()
				}
				_ = enc.Encode(out)
			} else if len(rep.Slots) > 0 {
				printSummary(cmd.OutOrStdout(), rep)
			}
			return err
		},
	}
	agentFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&image, "image", "", "image to run in the slots (required)")
	f.StringArrayVar(&slots, "slot", nil, "replace only this slot (repeatable); default: every slot")
	f.BoolVar(&force, "force", false, "replace slots that already run the image")
	f.IntVar(&maxSurge, "max-surge", 0, "blue/green slots (alt set) in their surge at once; 0: the agent's max_surge")
	f.BoolVar(&breakClaim, "break-claim", false, "redeploy even though a fleet rollout claims the host (it may replace the slots again)")
	f.StringVarP(&output, "output", "o", "text", "text or json (the report on stdout, progress on stderr)")
	return cmd
}

func printEvent(w io.Writer, e agent.Event) {
	line := fmt.Sprintf("%-12s %-9s %9s", e.Slot, e.Phase, roundDuration(e.Duration))
	if e.Detail != "" {
		line += "  " + e.Detail
	}
	if e.Err != "" {
		line += "  FAILED: " + e.Err
	}
	fmt.Fprintln(w, line)
}

// summaryPhases are the columns of the final table.
var summaryPhases = []agent.Phase{agent.PhaseDrain, agent.PhaseStop, agent.PhaseBoot, agent.PhaseGate, agent.PhaseRestore}

func printSummary(w io.Writer, rep agent.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSLOT\tRESULT\tDRAIN\tSTOP\tBOOT\tGATE\tRESTORE\tTOTAL\tWEIGHT\t")
	for _, s := range rep.Slots {
		fmt.Fprintf(tw, "%s\t%s\t", s.Slot, s.Result)
		for _, p := range summaryPhases {
			if d, ok := s.Phases[p]; ok {
				fmt.Fprintf(tw, "%s\t", roundDuration(d))
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t\n", s.Total.Round(time.Millisecond), s.Weight)
	}
	tw.Flush()
	fmt.Fprintf(w, "image %s: %d slot(s) in %s\n", rep.Image, len(rep.Slots), rep.Total.Round(time.Millisecond))
}

// roundDuration keeps three significant digits or so: milliseconds for
// phases that take seconds, tens of microseconds for the quick ones.
func roundDuration(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

func whoami() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}
