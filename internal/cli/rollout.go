package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/haroll/haroll/agent/agentpb"
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
	"on-failure": "on_failure", "prepull": "prepull",
}

// rolloutCmd is `haroll rollout`: its flags, and a new rollout (run) or a
// resumed one (resume), which differ in where the image and plan come from
// and share one executor builder.
type rolloutCmd struct {
	image           string
	force, dryRun   bool
	skipUnreachable bool
	resume          bool
	output          string
	progressMode    string // --progress: auto, live or plain
}

func newRollout() *cobra.Command {
	c := &rolloutCmd{}
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

The progress is recorded in the state file (state_file, --state-file) and
the log beside it (<state_file>.log): every finished (host, slot) pair is on
disk before it is reported. If the coordinator dies (or is
interrupted), --resume with the same --config goes on from the first
unfinished pair, with the image and plan recorded there, and does not ask
finished pairs again; a host still busy with the slot that was in flight is
waited for (up to step_timeout), then asked for that slot again, which the
agent skips if it is already on the image.

One rollout at a time: before it asks any agent anything, a rollout (and
--resume) takes the fleet lock in the store (store: file, beside state_file;
store: etcd, in etcd, where its lease lapses lock_ttl after a crash). While
another holds it, the rollout is refused with the holder's name, or waits up
to --lock-wait. 'haroll rollout lock status' shows the holder, 'lock release'
frees the lock of a holder that is gone. With store: etcd the state, the
canary decisions and the lock live in etcd: --resume, promote, abort and lock
work from any machine with the configuration.`,
		Args: cobra.NoArgs,
		RunE: c.runE,
	}
	cmd.AddCommand(
		newDecide(rollout.DecisionPromote, "Promote the paused canary of a running rollout (--pause): its hosts get their whole weight and the rollout goes on"),
		newDecide(rollout.DecisionAbort, "Abort the canary of a running rollout: its hosts go back to the old image and the rollout stops"),
		newRolloutHistory(),
		newRolloutRollback(),
		newLock())
	f := cmd.Flags()
	f.String("config", defaultCoordinatorConfig, "coordinator configuration file (YAML)")
	f.StringVar(&c.image, "image", "", "image to roll out (required)")
	f.String("batch", "", `hosts per batch: "35%" of the fleet or a count (overrides batch)`)
	f.String("canary", "", `a first batch of its own size, run as a canary: a count or "P%" (overrides canary.hosts)`)
	f.String("canary-weight", "", `the share of their weight the canaries get, e.g. "10%" (overrides canary.weight)`)
	f.Duration("canary-window", 0, "how long the canaries' HAProxy counters are read before they are judged (overrides canary.window)")
	f.Bool("pause", false, "after a canary that passed, wait for 'haroll rollout promote' or 'haroll rollout abort' (overrides canary.pause)")
	f.String("max-failures", "", `failed hosts tolerated before no further batch starts: "N" or "P%" (overrides max_failures)`)
	f.StringArray("slot", nil, "replace only this slot, in this order (repeatable; overrides slots); default: every slot")
	f.BoolVar(&c.force, "force", false, "replace slots that already run the image")
	f.BoolVar(&c.dryRun, "dry-run", false, "print the plan and touch nothing (asks the agents' status only when no slot is given)")
	f.BoolVar(&c.skipUnreachable, "skip-unreachable", false, "leave hosts that do not answer out of the rollout instead of refusing it")
	f.BoolVar(&c.resume, "resume", false, "finish the interrupted rollout recorded in the state file (its image and plan); --image, if given, must match")
	f.String("state-file", "", "where the rollout's progress is recorded, for --resume (overrides state_file; default "+rollout.DefaultStateFile+")")
	f.Duration("step-timeout", 0, "how long every host of a step has to report on its slot, its image pull included (overrides step_timeout)")
	f.String("on-failure", "", "when failures pass max_failures: stop, rollback (put earlier batches back too) or pause (wait for promote/abort) (overrides on_failure)")
	f.Bool("prepull", true, "every host pulls the image before the first drain; a host that cannot get it stops the rollout with nothing changed (overrides prepull)")
	f.String("metrics-listen", "", "serve the rollout's progress as Prometheus metrics on host:port while it runs (overrides metrics_listen)")
	f.Bool("insecure", false, "dial the agents in plaintext; refused unless every host is a loopback address")
	f.StringVarP(&c.output, "output", "o", "text", "text or json (the result on stdout, progress on stderr)")
	addLockFlags(f)
	f.StringVar(&c.progressMode, "progress", progressAuto, "auto (a live view redrawn in place on a terminal with --output text, else plain), live, or plain (one line per event)")
	return cmd
}

// runE checks the flags that go together, loads the configuration and runs
// or resumes.
func (c *rolloutCmd) runE(cmd *cobra.Command, _ []string) error {
	if c.output != "text" && c.output != "json" {
		return usageError("--output %q: want text or json", c.output)
	}
	if m := c.progressMode; m != progressAuto && m != progressLive && m != progressPlain {
		return usageError("--progress %q: want auto, live or plain", m)
	}
	if c.resume && c.dryRun {
		return usageError("--resume and --dry-run do not go together: the plan of a resumed rollout is in its state file")
	}
	if c.resume {
		for _, name := range []string{"batch", "canary", "canary-weight", "canary-window", "pause", "slot", "force"} {
			if cmd.Flags().Changed(name) {
				return usageError("--%s cannot change a resumed rollout: its image and plan come from its state file", name)
			}
		}
	} else if c.image == "" {
		return usageError("--image is required (or --resume to finish an interrupted rollout)")
	}
	cfg, err := loadCoordinatorConfig(cmd)
	if err != nil {
		return err
	}
	if c.resume {
		return c.resumeRollout(cmd, cfg)
	}
	return c.run(cmd, cfg)
}

// rolloutSpec is what the executor rolls: from the configuration and flags
// for a new rollout, from the state file for a resumed one.
type rolloutSpec struct {
	image       string
	force       bool
	origin      string
	hosts       []string
	slots       []string
	maxFailures rollout.Threshold
	canary      *rollout.CanaryPolicy
	// images: a rollback's per-pair images (image is then empty), with
	// start-first wherever a slot allows it.
	images           map[string]string
	preferStartFirst bool
}

// executor builds the Executor of spec over dial, with its events fed to
// rm first (rm may be nil: no metrics), then to events.
func (c *rolloutCmd) executor(cfg rollout.Config, spec rolloutSpec, dial rollout.Dial, events func(rollout.Event), rm *rolloutMetrics) *rollout.Executor {
	return &rollout.Executor{
		Dial: dial, Image: spec.image, Force: spec.force, Origin: spec.origin,
		MaxFailures: spec.maxFailures, SkipUnreachable: c.skipUnreachable,
		ConnectTimeout: cfg.ConnectTimeout, StepTimeout: cfg.StepTimeout,
		StateFile: cfg.StateFile, Canary: spec.canary, Hooks: cfg.Hooks,
		Prepull: cfg.Prepull, PrepullConcurrency: cfg.PrepullConcurrency,
		OnFailure: cfg.OnFailure, RollbackBatch: cfg.RollbackBatch(), ClaimTTL: cfg.ClaimTTL,
		Images: spec.images, PreferStartFirst: spec.preferStartFirst,
		Events: rm.events(events),
		Log:    slog.Default().With("image", spec.image),
	}
}

// progress is where the live progress goes: stdout with text output, else
// stderr (stdout is the JSON result's).
func (c *rolloutCmd) progress(cmd *cobra.Command) io.Writer {
	if c.output == "text" {
		return cmd.OutOrStdout()
	}
	return cmd.ErrOrStderr()
}

// run starts a new rollout of c.image over the configured hosts, or with
// --dry-run prints its plan.
func (c *rolloutCmd) run(cmd *cobra.Command, cfg rollout.Config) error {
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
	if c.dryRun && len(cfg.Slots) > 0 {
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
	spec := rolloutSpec{image: c.image, force: c.force, origin: "rollout by " + whoami(),
		hosts: hosts, slots: cfg.Slots, maxFailures: maxFailures, canary: canary}
	if c.dryRun {
		e := c.executor(cfg, spec, dial, rollout.NewProgress(c.progress(cmd), hosts, cfg.Slots).Event, nil)
		e.StateFile = ""
		return dryRunWithStatus(cmd, e, hosts, strategy)
	}
	return c.start(cmd, cfg, dial, strategy, rollout.LockInfo{Kind: rollout.KindRollout, Image: c.image},
		func() (rolloutSpec, error) { return spec, nil })
}

// start takes the fleet lock for info, makes the rollout's spec under it
// (a rollback reads the agents' history there: what it reads must not
// change before it runs), and runs it.
func (c *rolloutCmd) start(cmd *cobra.Command, cfg rollout.Config, dial rollout.Dial, strategy rollout.Strategy,
	info rollout.LockInfo, makeSpec func() (rolloutSpec, error)) error {
	store, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	lease, err := acquireFleetLock(cmd, store, info)
	if err != nil {
		return err
	}
	var runErr error // the rollout's: how to release the lock
	defer releaseFleetLockAfter(lease, &runErr)
	spec, err := makeSpec()
	if err != nil {
		return err
	}
	sink, err := c.progressSink(cmd, spec)
	if err != nil {
		return err
	}
	defer sink.Close() //nolint:errcheck // closed below on the way to the result
	progress := sink.Writer()
	rm, err := serveRolloutMetrics(cfg.MetricsListen, spec.hosts)
	if err != nil {
		return err
	}
	defer rm.close()
	e := c.executor(cfg, spec, dial, sink.Event, rm)
	e.Store, e.Lease = store, lease
	if old, err := store.ReadState(cmd.Context()); err == nil && !old.Complete {
		fmt.Fprintf(progress, "note: %s records an unfinished rollout of %s (%d of %d pairs done); this rollout replaces it\n",
			store, old.Image, len(old.Done), old.Pairs())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		slog.Warn("an unreadable rollout state is replaced", "store", store.String(), "error", err)
	}
	res, err := e.Run(cmd.Context(), spec.hosts, spec.slots, strategy)
	runErr = err
	closeProgress(sink)
	rm.finish(res)
	recordRollout(store, lease, res, err)
	return writeResult(cmd.OutOrStdout(), c.output, res, err)
}

// resumeRollout goes on with the unfinished rollout in the store, under a
// new hold of the fleet lock.
func (c *rolloutCmd) resumeRollout(cmd *cobra.Command, cfg rollout.Config) error {
	store, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	// A first read names the image in the lock (a refused resume changes
	// nothing); the state is read again once the lock is held.
	if _, err := rollout.LoadResumableFrom(cmd.Context(), store, c.image); err != nil {
		return err
	}
	st, _ := store.ReadState(cmd.Context())
	info := rollout.LockInfo{Kind: rollout.KindRollout, Image: c.image}
	if st != nil {
		// The same rollout, under a new token: its agents' history keeps
		// one id for it (a later rollback undoes the whole of it).
		info.Image, info.RolloutID, info.Message = st.Image, st.RolloutID, st.Message
		if st.Kind != "" {
			info.Kind = st.Kind
		}
	}
	lease, err := acquireFleetLock(cmd, store, info)
	if err != nil {
		return err
	}
	var runErr error // the rollout's: how to release the lock
	defer releaseFleetLockAfter(lease, &runErr)
	if st, err = rollout.LoadResumableFrom(cmd.Context(), store, c.image); err != nil {
		return err
	}
	maxFailures, err := rollout.ParseMaxFailures(st.MaxFailures)
	if err != nil {
		return fmt.Errorf("%s: max_failures: %w", store, err)
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
	spec := rolloutSpec{image: st.Image, force: st.Force, origin: "rollout (resumed) by " + whoami(),
		hosts: st.Hosts, slots: st.Slots, maxFailures: maxFailures, canary: st.CanaryPolicy,
		images: st.Images, preferStartFirst: st.Kind == rollout.KindRollback}
	// What the rollout does on failure is the recorded one, unless the flag
	// says otherwise now.
	if st.OnFailure != "" && !cmd.Flags().Changed("on-failure") {
		cfg.OnFailure = st.OnFailure
	}
	sink, err := c.progressSink(cmd, spec)
	if err != nil {
		return err
	}
	defer sink.Close() //nolint:errcheck // closed below on the way to the result
	fmt.Fprintf(sink.Writer(), "resuming the rollout of %s recorded in %s (started %s): %d of %d (host, slot) pair(s) finished, %d to go\n",
		st.Image, store, st.Started.Format(time.RFC3339), len(st.Done), st.Pairs(), st.Pairs()-len(st.Done))
	rm, err := serveRolloutMetrics(cfg.MetricsListen, st.Hosts)
	if err != nil {
		return err
	}
	defer rm.close()
	e := c.executor(cfg, spec, dial, sink.Event, rm)
	e.Store, e.Lease = store, lease
	res, err := e.Resume(cmd.Context(), st)
	runErr = err
	closeProgress(sink)
	rm.finish(res)
	recordRollout(store, lease, res, err)
	return writeResult(cmd.OutOrStdout(), c.output, res, err)
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
		return rollout.DialGRPC(grpc.WithTransportCredentials(insecure.NewCredentials()), keepaliveOption(cfg)), nil
	}
	tc, err := tlsconf.Client(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return rollout.DialGRPC(grpc.WithTransportCredentials(credentials.NewTLS(tc)), keepaliveOption(cfg)), nil
}

// keepaliveOption is the pings of agent_keepalive; 0 sends none (gRPC's
// infinite keepalive time).
func keepaliveOption(cfg rollout.Config) grpc.DialOption {
	k := agentpb.DefaultKeepalive()
	k.ClientTime = cfg.AgentKeepalive
	if k.ClientTime == 0 {
		k.ClientTime = time.Duration(math.MaxInt64)
	}
	return k.DialOption()
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
