package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/haroll/haroll/internal/tlsconf"
	"github.com/haroll/haroll/rollout"
)

// defaultCoordinatorConfig is where the coordinator's configuration lives.
const defaultCoordinatorConfig = "/etc/haroll/coordinator.yaml"

// rolloutFlagKeys maps the flags that override coordinator keys.
var rolloutFlagKeys = map[string]string{
	"batch": "batch", "canary": "canary.hosts", "canary-weight": "canary.weight", "canary-window": "canary.window",
	"pause": "canary.pause", "max-failures": "max_failures", "slot": "slots",
	"step-timeout": "step_timeout", "state-file": "state_file", "metrics-listen": "metrics_listen",
}

func newRollout() *cobra.Command {
	var (
		image           string
		force, dryRun   bool
		skipUnreachable bool
		resume          bool
		output          string
	)
	cmd := &cobra.Command{
		Use:   "rollout --config coordinator.yaml (--image IMAGE | --resume)",
		Short: "Roll IMAGE over a fleet of agents, batch by batch",
		Long: `rollout drives the agents listed in the coordinator configuration over
gRPC with mutual TLS. It first asks every agent its status: a host that does
not answer, is busy or lacks a slot stops the rollout before anything is
touched (--skip-unreachable leaves unanswering hosts out instead). Then it
rolls the hosts in batches (--batch, after an optional --canary batch); inside
a batch, each slot is replaced on every host of the batch at once, one slot
per host at a time. When the failed hosts exceed --max-failures after a
batch, no further batch starts. The exit status is 1 if any host failed.

hooks.pre, if configured, runs after those checks and before the first
batch: if it fails, no host is touched. hooks.post runs once the rollout has
ended, told how it ended; if it fails the exit status is 1, but nothing is
undone.

The progress is recorded in the state file (state_file, --state-file) after
every finished (host, slot) pair. If the coordinator dies (or is
interrupted), --resume with the same --config goes on from the first
unfinished pair, with the image and plan recorded there, and does not ask
finished pairs again; a host still busy with the slot that was in flight is
waited for (up to step_timeout), then asked for that slot again, which the
agent skips if it is already on the image.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError("--output %q: want text or json", output)
			}
			if resume && dryRun {
				return usageError("--resume and --dry-run do not go together: the plan of a resumed rollout is in its state file")
			}
			if resume {
				for _, name := range []string{"batch", "canary", "canary-weight", "canary-window", "pause", "slot", "force"} {
					if cmd.Flags().Changed(name) {
						return usageError("--%s cannot change a resumed rollout: its image and plan come from its state file", name)
					}
				}
			} else if image == "" {
				return usageError("--image is required (or --resume to finish an interrupted rollout)")
			}
			cfg, err := loadCoordinatorConfig(cmd)
			if err != nil {
				return err
			}
			if resume {
				return resumeRollout(cmd, cfg, image, skipUnreachable, output)
			}
			hosts, err := cfg.ReadHosts()
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			strategy, maxFailures, err := cfg.Strategy()
			if err != nil {
				return err
			}
			canary, err := cfg.CanaryPolicy()
			if err != nil {
				return err
			}
			if dryRun && len(cfg.Slots) > 0 {
				plan, err := rollout.NewPlan(hosts, cfg.Slots, strategy)
				if err != nil {
					return err
				}
				rollout.WritePlan(cmd.OutOrStdout(), plan, strategy)
				return nil
			}
			dial, err := dialer(cfg, hosts)
			if err != nil {
				return err
			}
			progress := cmd.ErrOrStderr()
			if output == "text" {
				progress = cmd.OutOrStdout()
			}
			e := &rollout.Executor{
				Dial: dial, Image: image, Force: force, Origin: "rollout by " + whoami(),
				MaxFailures: maxFailures, SkipUnreachable: skipUnreachable,
				ConnectTimeout: cfg.ConnectTimeout, StepTimeout: cfg.StepTimeout,
				StateFile: cfg.StateFile, Canary: canary, Hooks: cfg.Hooks,
				Events: rollout.NewProgress(progress, hosts, cfg.Slots).Event,
				Log:    slog.Default().With("image", image),
			}
			if dryRun {
				e.StateFile = ""
				return dryRunWithStatus(cmd, e, hosts, strategy)
			}
			rm, err := serveRolloutMetrics(cfg.MetricsListen, hosts)
			if err != nil {
				return err
			}
			defer rm.close()
			e.Events = rm.events(e.Events)
			if old, err := rollout.ReadState(cfg.StateFile); err == nil && !old.Complete {
				fmt.Fprintf(progress, "note: %s records an unfinished rollout of %s (%d of %d pairs done); this rollout replaces it\n",
					cfg.StateFile, old.Image, len(old.Done), old.Pairs())
			} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
				slog.Warn("an unreadable state file is replaced", "state_file", cfg.StateFile, "error", err)
			}
			res, err := e.Run(cmd.Context(), hosts, cfg.Slots, strategy)
			rm.finish(res)
			return writeResult(cmd.OutOrStdout(), output, res, err)
		},
	}
	cmd.AddCommand(
		newDecide(rollout.DecisionPromote, "Promote the paused canary of a running rollout (--pause): its hosts get their whole weight and the rollout goes on"),
		newDecide(rollout.DecisionAbort, "Abort the canary of a running rollout: its hosts go back to the old image and the rollout stops"))
	f := cmd.Flags()
	f.String("config", defaultCoordinatorConfig, "coordinator configuration file (YAML)")
	f.StringVar(&image, "image", "", "image to roll out (required)")
	f.String("batch", "", `hosts per batch: "35%" of the fleet or a count (overrides batch)`)
	f.String("canary", "", `a first batch of its own size, run as a canary: a count or "P%" (overrides canary.hosts)`)
	f.String("canary-weight", "", `the share of their weight the canaries get, e.g. "10%" (overrides canary.weight)`)
	f.Duration("canary-window", 0, "how long the canaries' HAProxy counters are read before they are judged (overrides canary.window)")
	f.Bool("pause", false, "after a canary that passed, wait for 'haroll rollout promote' or 'haroll rollout abort' (overrides canary.pause)")
	f.String("max-failures", "", `failed hosts tolerated before no further batch starts: "N" or "P%" (overrides max_failures)`)
	f.StringArray("slot", nil, "replace only this slot, in this order (repeatable; overrides slots); default: every slot")
	f.BoolVar(&force, "force", false, "replace slots that already run the image")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and touch nothing (asks the agents' status only when no slot is given)")
	f.BoolVar(&skipUnreachable, "skip-unreachable", false, "leave hosts that do not answer out of the rollout instead of refusing it")
	f.BoolVar(&resume, "resume", false, "finish the interrupted rollout recorded in the state file (its image and plan); --image, if given, must match")
	f.String("state-file", "", "where the rollout's progress is recorded, for --resume (overrides state_file; default "+rollout.DefaultStateFile+")")
	f.Duration("step-timeout", 0, "how long every host of a step has to report on its slot, its image pull included (overrides step_timeout)")
	f.String("metrics-listen", "", "serve the rollout's progress as Prometheus metrics on host:port while it runs (overrides metrics_listen)")
	f.Bool("insecure", false, "dial the agents in plaintext; refused unless every host is a loopback address")
	f.StringVarP(&output, "output", "o", "text", "text or json (the result on stdout, progress on stderr)")
	return cmd
}

// resumeRollout goes on with the unfinished rollout in cfg.StateFile.
func resumeRollout(cmd *cobra.Command, cfg rollout.Config, image string, skipUnreachable bool, output string) error {
	st, err := rollout.LoadResumable(cfg.StateFile, image)
	if err != nil {
		return err
	}
	maxFailures, err := rollout.ParseMaxFailures(st.MaxFailures)
	if err != nil {
		return fmt.Errorf("state file %s: max_failures: %w", cfg.StateFile, err)
	}
	if cmd.Flags().Changed("max-failures") {
		if _, maxFailures, err = cfg.Strategy(); err != nil {
			return err
		}
	}
	if hosts, err := cfg.ReadHosts(); err == nil && !slices.Equal(hosts, st.Hosts) {
		slog.Warn("the configuration lists other hosts than the recorded rollout: resuming over the recorded ones",
			"config", strings.Join(hosts, " "), "recorded", strings.Join(st.Hosts, " "))
	}
	dial, err := dialer(cfg, st.Hosts)
	if err != nil {
		return err
	}
	progress := cmd.ErrOrStderr()
	if output == "text" {
		progress = cmd.OutOrStdout()
	}
	fmt.Fprintf(progress, "resuming the rollout of %s recorded in %s (started %s): %d of %d (host, slot) pair(s) finished, %d to go\n",
		st.Image, cfg.StateFile, st.Started.Format(time.RFC3339), len(st.Done), st.Pairs(), st.Pairs()-len(st.Done))
	rm, err := serveRolloutMetrics(cfg.MetricsListen, st.Hosts)
	if err != nil {
		return err
	}
	defer rm.close()
	e := &rollout.Executor{
		Dial: dial, Image: st.Image, Force: st.Force, Origin: "rollout (resumed) by " + whoami(),
		MaxFailures: maxFailures, SkipUnreachable: skipUnreachable,
		ConnectTimeout: cfg.ConnectTimeout, StepTimeout: cfg.StepTimeout, StateFile: cfg.StateFile,
		Canary: st.CanaryPolicy,
		Hooks:  cfg.Hooks,
		Events: rm.events(rollout.NewProgress(progress, st.Hosts, st.Slots).Event),
		Log:    slog.Default().With("image", st.Image),
	}
	res, err := e.Resume(cmd.Context(), st)
	rm.finish(res)
	return writeResult(cmd.OutOrStdout(), output, res, err)
}

// writeResult writes the final result as a table or JSON and returns err,
// or the error writing the JSON.
func writeResult(w io.Writer, output string, res rollout.Result, err error) error {
	if output == "json" {
		if jerr := rollout.WriteJSON(w, res); jerr != nil && err == nil {
			err = jerr
		}
	} else if len(res.Hosts) > 0 {
		fmt.Fprintln(w)
		rollout.WriteTable(w, res)
	}
	return err
}

// dryRunWithStatus learns the slots from the agents' status (which changes
// nothing) and prints the plan.
func dryRunWithStatus(cmd *cobra.Command, e *rollout.Executor, hosts []string, strategy rollout.Strategy) error {
	ready, slots, err := e.Check(cmd.Context(), hosts, nil)
	if err != nil {
		return err
	}
	plan, err := rollout.NewPlan(ready, slots, strategy)
	if err != nil {
		return err
	}
	rollout.WritePlan(cmd.OutOrStdout(), plan, strategy)
	return nil
}

// dialer opens the agents with mutual TLS, or in plaintext with insecure on
// loopback only.
func dialer(cfg rollout.Config, hosts []string) (rollout.Dial, error) {
	if cfg.Insecure {
		var remote []string
		for _, h := range hosts {
			if !tlsconf.IsLoopback(h) {
				remote = append(remote, h)
			}
		}
		if len(remote) > 0 {
			return nil, usageError("--insecure is only for loopback agents, and these are not: %s", strings.Join(remote, ", "))
		}
		return rollout.DialGRPC(grpc.WithTransportCredentials(insecure.NewCredentials())), nil
	}
	tc, err := tlsconf.Client(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return rollout.DialGRPC(grpc.WithTransportCredentials(credentials.NewTLS(tc))), nil
}

// loadCoordinatorConfig reads the coordinator configuration from the
// --config file, HAROLL_* environment variables (HAROLL_BATCH,
// HAROLL_TLS_CERT, HAROLL_STEP_TIMEOUT, ...) and flags, in rising
// precedence, then validates it. Plaintext is a flag only (--insecure), never
// a file or environment setting.
func loadCoordinatorConfig(cmd *cobra.Command) (rollout.Config, error) {
	plaintext, _ := cmd.Flags().GetBool("insecure")
	return loadConfig(cmd, rollout.DefaultConfig(), rolloutFlagKeys, "configs/coordinator.yaml",
		func(c *rollout.Config) { c.Insecure = plaintext })
}
