package cli

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/agent/agentpb"
	"github.com/haroll/haroll/rollout"
)

// rollbackFlagKeys maps the flags of `haroll rollout rollback` that
// override coordinator keys: its batch is rollback.batch.
var rollbackFlagKeys = map[string]string{
	"batch": "rollback.batch", "max-failures": "max_failures", "step-timeout": "step_timeout",
	"state-file": "state_file", "metrics-listen": "metrics_listen", "prepull": "prepull",
}

// newRolloutRollback is `haroll rollout rollback`: every slot the last
// fleet rollout replaced goes back to the image it ran before (from the
// agents' history), or every slot to --to IMAGE; a rollout of its own, on
// the fast track.
func newRolloutRollback() *cobra.Command {
	c := &rolloutCmd{}
	var to string
	cmd := &cobra.Command{
		Use:   "rollback --config coordinator.yaml [--to IMAGE] [--batch N|P%]",
		Short: "Put every slot back on the image it ran before the last rollout (or every slot on --to IMAGE)",
		Long: `rollback undoes the last fleet rollout. It takes the fleet lock (kind rollback), asks
every agent for its history and finds the last rollout (the newest fleet rollout any
agent recorded, rollbacks aside); every slot that rollout replaced goes back to the
image it ran before, pair by pair (hosts and slots it did not replace are left
alone). With --to IMAGE every slot of every host goes to IMAGE instead.

It is a rollout of its own: the fleet lock, the preflight, the prepull, the state
(--resume finishes an interrupted rollback), the same per-slot rules (a slot is
drained only when its backend can do without it). On the fast track: no canary,
start-first wherever a slot allows it (strategy auto, and no fixed published
port or static address: a slot set to stop-first stays stop-first), and its own
batch size (rollback.batch, --batch; default 50%). A host whose history cannot
be read stops it before anything is touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.output != "text" && c.output != "json" {
				return usageError("--output %q: want text or json", c.output)
			}
			if m := c.progressMode; m != progressAuto && m != progressLive && m != progressPlain {
				return usageError("--progress %q: want auto, live or plain", m)
			}
			plaintext, _ := cmd.Flags().GetBool("insecure")
			cfg, err := loadConfig(cmd, rollout.DefaultConfig(), rollbackFlagKeys, "configs/coordinator.yaml",
				func(c *rollout.Config) { c.Insecure = plaintext })
			if err != nil {
				return err
			}
			return c.rollback(cmd, cfg, to)
		},
	}
	f := cmd.Flags()
	f.String("config", defaultCoordinatorConfig, "coordinator configuration file (YAML)")
	f.StringVar(&to, "to", "", "put every slot of every host on this image instead of each slot's previous one")
	f.String("batch", "", `hosts per batch: "50%" of the hosts put back or a count (overrides rollback.batch)`)
	f.String("max-failures", "", `failed hosts tolerated before no further batch starts (overrides max_failures)`)
	f.Duration("step-timeout", 0, "as for rollout (overrides step_timeout)")
	f.String("state-file", "", "as for rollout (overrides state_file)")
	f.String("metrics-listen", "", "as for rollout (overrides metrics_listen)")
	f.Bool("prepull", true, "every host pulls its old image before the first drain (overrides prepull)")
	f.BoolVar(&c.dryRun, "dry-run", false, "print what would go back where, and change nothing (reads the history without the lock)")
	f.BoolVar(&c.skipUnreachable, "skip-unreachable", false, "with --to: leave hosts that do not answer out instead of refusing")
	f.Bool("insecure", false, "dial the agents in plaintext; refused unless every host is a loopback address")
	f.StringVarP(&c.output, "output", "o", "text", "text or json (the result on stdout, progress on stderr)")
	f.StringVar(&c.progressMode, "progress", progressAuto, "auto, live or plain, as for rollout")
	addLockFlags(f)
	return cmd
}

// rollback runs the rollback: under the lock, it reads the histories and
// rolls each pair back (or every slot to `to`).
func (c *rolloutCmd) rollback(cmd *cobra.Command, cfg rollout.Config, to string) error {
	hosts, err := cfg.ReadHosts()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	_, maxFailures, err := cfg.Strategy()
	if err != nil {
		return err
	}
	strategy := rollout.Strategy{Batch: cfg.RollbackBatch()}
	dial, err := dialer(cfg, hosts)
	if err != nil {
		return err
	}
	// On failure a rollback stops: rolling a rollback back is a person's
	// call (a rollout of the image they want).
	cfg.OnFailure = rollout.OnFailureStop
	spec := rolloutSpec{origin: "rollback by " + whoami(), hosts: hosts, slots: cfg.Slots, maxFailures: maxFailures, preferStartFirst: true}
	plan := func() (rolloutSpec, error) {
		if to != "" {
			spec.image = to
			return spec, nil
		}
		hist := rollout.FleetHistory(cmd.Context(), dial, hosts, &agentpb.HistoryRequest{}, cfg.ConnectTimeout)
		p, err := rollout.PlanRollback(hist)
		if err != nil {
			return spec, err
		}
		writeRollbackPlan(c.progress(cmd), p)
		// The slots stay the configured ones (every slot by default, in
		// the agents' order): a pair without an image is left as it is.
		spec.images, spec.hosts = p.Images, p.Hosts
		return spec, nil
	}
	if c.dryRun {
		_, err := plan()
		return err
	}
	return c.start(cmd, cfg, dial, strategy, rollout.LockInfo{Kind: rollout.KindRollback, Image: to}, plan)
}

// rollbackSlots is the slots the rollback has a pair of, in name order:
// the slots of a rollback are those it puts back.
func rollbackSlots(p rollout.RollbackPlan) []string {
	var slots []string
	for k := range p.Images {
		if _, s, ok := strings.Cut(k, "/"); ok && !slices.Contains(slots, s) {
			slots = append(slots, s)
		}
	}
	sort.Strings(slots)
	return slots
}

// writeRollbackPlan says what goes back where, host by host.
func writeRollbackPlan(w interface{ Write([]byte) (int, error) }, p rollout.RollbackPlan) {
	fmt.Fprintf(w, "rolling back rollout %s (image %s): %d slot(s) on %d host(s) go back to what they ran before it\n",
		p.RolloutID, dash(p.Image), len(p.Images), len(p.Hosts))
	for _, h := range p.Hosts {
		var parts []string
		for _, s := range rollbackSlots(p) {
			if img, ok := p.Images[rollout.PairKey(h, s)]; ok {
				parts = append(parts, s+" -> "+img)
			}
		}
		fmt.Fprintf(w, "  %s: %s\n", h, strings.Join(parts, ", "))
	}
}
