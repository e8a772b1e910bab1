package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newStatus() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each slot: container, image, HAProxy status, weight, sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, closeAgent, err := prepare(cmd, output)
			if err != nil {
				return err
			}
			defer closeAgent()
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
				fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", s.Slot, s.Backend, s.Server,
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
			return err
		},
	}
	agentFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
