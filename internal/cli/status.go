package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/agent"
)

func newStatus() *cobra.Command {
	var (
		output  string
		history bool
		query   agent.HistoryQuery
	)
	cmd := &cobra.Command{
		Use:   "status [--history [--slot S] [--rollout ID] [--limit N]]",
		Short: "Show each slot: container, image, HAProxy status, weight, sessions; or the host's history",
		Long: `status shows each slot of this host and, when a fleet rollout claims the
host, which one. With --history it shows the host's record of replacements
instead, newest first: every slot result of every redeploy, by whoever asked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !history && (cmd.Flags().Changed("slot") || cmd.Flags().Changed("rollout") || cmd.Flags().Changed("limit")) {
				return usageError("--slot, --rollout and --limit select entries of --history")
			}
			if query.Limit < 0 {
				return usageError("--limit %d: want 0 (every entry kept) or more", query.Limit)
			}
			a, closeAgent, err := prepare(cmd, output)
			if err != nil {
				return err
			}
			defer closeAgent()
			if history {
				entries, err := a.History(cmd.Context(), query)
				if err != nil {
					return err
				}
				if output == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(entries)
				}
				rows := make([]historyRow, len(entries))
				for i, e := range entries {
					rows[i].HistoryEntry = e
				}
				printHistory(cmd.OutOrStdout(), rows, false)
				return nil
			}
			slots, err := a.Status(cmd.Context())
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				_ = enc.Encode(slots)
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SLOT\tSERVER\tCONTAINER\tID\tIMAGE\tHAPROXY\tWEIGHT\tSCUR\tADDR\t")
			for _, s := range slots {
				weight := fmt.Sprint(s.Weight)
				if s.Canary { // a canary's weight is a share of the one a promotion gives back
					weight = fmt.Sprintf("%d (canary of %d)", s.Weight, s.FullWeight)
				}
				server := s.Server
				if s.AltServer != "" { // a blue/green pair: which side is live
					server = fmt.Sprintf("%s|%s live %s", s.Server, s.AltServer, dash(s.LiveServer))
					if s.CanaryBeside != "" {
						server += " (canary) + " + s.CanaryBeside
					}
				}
				fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", s.Slot, s.Backend, server,
					s.Container, dash(s.ContainerID), dash(s.Image), dash(s.Status), weight, s.Scur, dash(s.Addr))
				if s.Err != "" {
					fmt.Fprintf(tw, "\t  error: %s\n", s.Err)
				}
				if p := s.Pending; p != nil && p.Wedged {
					why, _, _ := strings.Cut(p.Error, "\n")
					fmt.Fprintf(tw, "\t  WEDGED: the replacement by %s (phase %s) could not be undone: %s; `haroll recover --status` says what to do\n", p.Image, p.Phase, why)
				} else if p != nil {
					fmt.Fprintf(tw, "\t  pending: a replacement by %s, phase %s, since %s\n", p.Image, p.Phase, p.Started.Format(time.RFC3339))
				}
			}
			tw.Flush()
			if err != nil {
				return err
			}
			fs, err := a.FenceState(cmd.Context())
			if err != nil {
				return err
			}
			printClaim(cmd.OutOrStdout(), fs)
			return nil
		},
	}
	agentFlags(cmd)
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "text", "text or json")
	f.BoolVar(&history, "history", false, "show the host's record of replacements, newest first")
	f.StringVar(&query.Slot, "slot", "", "with --history: only this slot's entries")
	f.StringVar(&query.RolloutID, "rollout", "", "with --history: only this fleet rollout's entries")
	f.IntVar(&query.Limit, "limit", 20, "with --history: at most this many entries; 0: every one kept")
	return cmd
}

// printClaim says which fleet rollout claims the host, if one does.
func printClaim(w io.Writer, fs agent.FenceState) {
	c := fs.Claim
	if c == nil {
		return
	}
	kind := ""
	if c.Fence.Kind != "" {
		kind = " (" + c.Fence.Kind + ")"
	}
	since := ""
	if !c.Fence.Since.IsZero() {
		since = " since " + c.Fence.Since.UTC().Format(time.RFC3339)
	}
	why := ""
	if c.Fence.Message != "" {
		why = fmt.Sprintf(": %q", c.Fence.Message)
	}
	fmt.Fprintf(w, "\nclaimed by rollout %s%s held by %s%s, until %s%s; `haroll redeploy` here needs --break-claim (fence token %d)\n",
		c.Fence.RolloutID, kind, c.Fence.Holder, since, c.Expires.UTC().Format(time.RFC3339), why, fs.Token)
}

// printHistory writes the entries as a table, in the order given.
// printHistory prints rows as a table, newest first as given; withHost: a
// HOST column first (the fleet's history).
func printHistory(w io.Writer, rows []historyRow, withHost bool) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no replacement recorded")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if withHost {
		fmt.Fprint(tw, "HOST\t")
	}
	fmt.Fprintln(tw, "TIME\tSLOT\tRESULT\tIMAGE\tROLLOUT\tKIND\tORIGIN\tTOTAL\t")
	for _, r := range rows {
		e := r.HistoryEntry
		if withHost {
			fmt.Fprintf(tw, "%s\t", r.Host)
		}
		image := dash(e.ImageBefore) + " -> " + dash(e.ImageAfter)
		if e.ImageAfter != e.RequestedImage {
			image += " (asked " + e.RequestedImage + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", e.End.Local().Format(time.DateTime), e.Slot, e.Result, image,
			dash(e.RolloutID), dash(e.Kind), dash(e.Origin), e.Total.Round(time.Millisecond))
		if e.Err != "" {
			why, _, _ := strings.Cut(e.Err, "\n")
			if withHost {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprintf(tw, "\t  error: %s\n", why)
		}
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
