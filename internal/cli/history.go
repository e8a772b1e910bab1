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

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/rollout"
)

// HistoryRow is one replacement of one slot as `haroll rollout history`
// and `haroll status --history` print it: an agentpb.HistoryEntry with
// plain times and durations.
type HistoryRow struct {
	Host           string                   `json:"host,omitempty"`
	Seq            uint64                   `json:"seq"`
	Slot           string                   `json:"slot"`
	Start          time.Time                `json:"start"`
	End            time.Time                `json:"end"`
	Result         string                   `json:"result"`
	Error          string                   `json:"error,omitempty"`
	RequestedImage string                   `json:"requested_image,omitempty"`
	ImageBefore    string                   `json:"image_before,omitempty"`
	DigestBefore   string                   `json:"digest_before,omitempty"`
	ImageAfter     string                   `json:"image_after,omitempty"`
	DigestAfter    string                   `json:"digest_after,omitempty"`
	Origin         string                   `json:"origin,omitempty"`
	RolloutID      string                   `json:"rollout_id,omitempty"`
	FenceToken     uint64                   `json:"fence_token,omitempty"`
	Kind           string                   `json:"kind,omitempty"`
	Total          time.Duration            `json:"total_ns"`
	Phases         map[string]time.Duration `json:"phases_ns,omitempty"`
}

// historyRow turns host's entry e into a HistoryRow.
func historyRow(host string, e *agentpb.HistoryEntry) HistoryRow {
	r := HistoryRow{Host: host, Seq: e.GetSeq(), Slot: e.GetSlot(), Start: e.GetStart().AsTime(), End: e.GetEnd().AsTime(),
		Result: e.ResultName(), Error: e.GetError(), RequestedImage: e.GetRequestedImage(),
		ImageBefore: e.GetImageBefore(), DigestBefore: e.GetDigestBefore(), ImageAfter: e.GetImageAfter(), DigestAfter: e.GetDigestAfter(),
		Origin: e.GetOrigin(), RolloutID: e.GetRolloutId(), FenceToken: e.GetFenceToken(), Kind: e.GetKind(), Total: e.GetTotal().AsDuration()}
	if len(e.GetPhases()) > 0 {
		r.Phases = make(map[string]time.Duration, len(e.GetPhases()))
		for p, d := range e.GetPhases() {
			r.Phases[p] = d.AsDuration()
		}
	}
	return r
}

// writeHistory prints rows newest first as a table (withHost: a HOST
// column) or JSON.
func writeHistory(w io.Writer, output string, rows []HistoryRow, withHost bool) error {
	slices.SortStableFunc(rows, func(a, b HistoryRow) int { return b.End.Compare(a.End) })
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []HistoryRow{}
		}
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "no replacement recorded")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if withHost {
		fmt.Fprint(tw, "HOST\t")
	}
	fmt.Fprintln(tw, "END\tSLOT\tRESULT\tBEFORE -> AFTER\tROLLOUT\tKIND\tBY\tTOTAL\t")
	for _, r := range rows {
		if withHost {
			fmt.Fprintf(tw, "%s\t", r.Host)
		}
		kind, id := r.Kind, r.RolloutID
		if id == "" {
			kind, id = "redeploy", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s -> %s\t%s\t%s\t%s\t%s\t\n", r.End.Local().Format("2006-01-02 15:04:05"), r.Slot, r.Result,
			orDash(r.ImageBefore), orDash(r.ImageAfter), id, kind, r.Origin, r.Total.Round(100*time.Millisecond))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
			var rows []HistoryRow
			var errs []error
			for _, hh := range hist {
				if hh.Err != nil {
					errs = append(errs, hh.Err)
					continue
				}
				for _, e := range hh.Entries {
					rows = append(rows, historyRow(hh.Host, e))
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
			orDash(r.Image), r.Holder, r.Outcome, r.Hosts, r.Done, r.Failed, r.Ended.Sub(r.Started).Round(time.Second), r.Message)
	}
	return tw.Flush()
}
