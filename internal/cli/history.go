package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/rollout"
)

// historyRow is one replacement of one slot as `haroll rollout history`
// prints it: the agent's entry (as `haroll status --history` prints it on
// the host), with its host.
type historyRow struct {
	Host string `json:"host,omitempty"`
	agent.HistoryEntry
}

// writeHistory prints rows newest first as a table (withHost: a HOST
// column) or JSON.
func writeHistory(w io.Writer, output string, rows []historyRow, withHost bool) error {
	slices.SortStableFunc(rows, func(a, b historyRow) int { return b.End.Compare(a.End) })
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []historyRow{}
		}
		return enc.Encode(rows)
	}
	printHistory(w, rows, withHost)
	return nil
}

// newRolloutHistory is `haroll rollout history`: every host's recorded
// replacements, asked of the agents themselves.
func newRolloutHistory() *cobra.Command {
	var hostsWanted []string
	var slot, output string
	var limit int
	var rollouts bool
	cmd := &cobra.Command{
		Use:   "history --config coordinator.yaml [--host H]... [--slot S] [--limit N] [-o json]",
		Short: "Show what every host's slots ran, when, who asked, for which rollout, and how it ended",
		Long: `history asks every agent of the configuration (or --host only) for the replacements
it recorded (each agent keeps the newest of every slot, across restarts: history.max_per_slot)
and prints them newest first. Hosts that do not answer are named on stderr and make the exit
status 1; the others are printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError("--output %q: want text or json", output)
			}
			if limit < 0 {
				return usageError("--limit %d: want 0 (all) or more", limit)
			}
			cfg, err := loadCoordinatorConfig(cmd)
			if err != nil {
				return err
			}
			if rollouts {
				return writeRolloutIndex(cmd, cfg, output, limit)
			}
			hosts, err := cfg.ReadHosts()
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			if len(hostsWanted) > 0 {
				var unknown []string
				for _, h := range hostsWanted {
					if !slices.Contains(hosts, h) {
						unknown = append(unknown, h)
					}
				}
				if len(unknown) > 0 {
					return usageError("--host %s: not in the configuration's hosts (%s)", strings.Join(unknown, ", "), strings.Join(hosts, " "))
				}
				hosts = hostsWanted
			}
			dial, err := dialer(cfg, hosts)
			if err != nil {
				return err
			}
			hist := rollout.FleetHistory(cmd.Context(), dial, hosts, &agentpb.HistoryRequest{Slot: slot, Limit: int32(limit)}, cfg.ConnectTimeout)
			var rows []historyRow
			var errs []error
			for _, hh := range hist {
				if hh.Err != nil {
					errs = append(errs, hh.Err)
					continue
				}
				for _, e := range agent.HistoryFromPB(hh.Entries) {
					rows = append(rows, historyRow{Host: hh.Host, HistoryEntry: e})
				}
			}
			if err := writeHistory(cmd.OutOrStdout(), output, rows, true); err != nil {
				return err
			}
			if len(errs) > 0 {
				return fmt.Errorf("%d of %d host(s) did not answer: %w", len(errs), len(hosts), errors.Join(errs...))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", defaultCoordinatorConfig, "coordinator configuration file (YAML)")
	f.StringArrayVar(&hostsWanted, "host", nil, "only this host (an address of the configuration; repeatable)")
	f.StringVar(&slot, "slot", "", "only this slot")
	f.IntVar(&limit, "limit", 0, "at most this many entries per host, newest first (0: all kept)")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	f.BoolVar(&rollouts, "rollouts", false, "list the rollouts themselves (who, why, when, how they ended) from the store's index, not the agents' replacements")
	f.Bool("insecure", false, "dial the agents in plaintext; refused unless every host is a loopback address")
	return cmd
}

// writeRolloutIndex prints the store's history index: one line per
// rollout, newest first.
func writeRolloutIndex(cmd *cobra.Command, cfg rollout.Config, output string, limit int) error {
	store, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	recs, err := store.Rollouts(cmd.Context(), limit)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if recs == nil {
			recs = []rollout.RolloutRecord{}
		}
		return enc.Encode(recs)
	}
	if len(recs) == 0 {
		fmt.Fprintf(w, "no rollout recorded in %s\n", store)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tROLLOUT\tKIND\tIMAGE\tBY\tOUTCOME\tHOSTS (DONE/FAILED)\tTOOK\tMESSAGE\t")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d (%d/%d)\t%s\t%s\t\n", r.Started.Local().Format("2006-01-02 15:04:05"), r.RolloutID, r.Kind,
			dash(r.Image), r.Holder, r.Outcome, r.Hosts, r.Done, r.Failed, r.Ended.Sub(r.Started).Round(time.Second), r.Message)
	}
	return tw.Flush()
}
