// Command fleet measures the real coordinator, the `haroll rollout` binary
// in a process of its own, driving N simulated agents with production
// settings: mutual TLS with keys made by `haroll certs`, a state file on
// disk, the progress written to a file, metrics served (and scraped every
// -scrape, as Prometheus would), batch 35%, and agents that stream the phase
// events a real agent sends for a start-first slot, each slot taking 2 to 5
// s (seeded: every build sees the same times).
//
// The agents are real gRPC servers on 127.0.0.1, -per-child of them in each
// child process of this program, so that their CPU and memory are not the
// coordinator's. With -baseline REV, haroll built at REV runs first, then the
// tree's, each against fresh agents, in one run on one machine.
//
//	go run ./bench/fleet -agents 1000 [-baseline main]   (or: make bench-fleet AGENTS=1000 BASELINE=main)
//
// It prints a markdown table of the figures, then one line per build:
//
//	fleet agents=N total_s=… ideal_s=… overhead_pct=… coordinator_rss_mb=… cpu_ms_per_host=… build=tree
//
// total is the coordinator's start to its exit; ideal the sum over steps
// (batch × slot) of the slowest slot time the step's agents reported.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

func main() {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(serveChild(spec))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fleet:", err)
		os.Exit(1)
	}
}

// options are the bench's flags.
type options struct {
	agents, perChild int
	baseline         string
	seed             uint64
	slotMin, slotMax time.Duration
	scrape           time.Duration
	dir              string
	keep, gctrace    bool
	logLevel         string
}

func parseFlags() (options, error) {
	var o options
	flag.IntVar(&o.agents, "agents", 1000, "simulated agents (hosts), 3 slots each")
	flag.StringVar(&o.baseline, "baseline", "", "also run haroll built at this git revision, first (old and new in one run)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the slot times (the same for every build)")
	flag.DurationVar(&o.slotMin, "slot-min", 2*time.Second, "shortest slot time")
	flag.DurationVar(&o.slotMax, "slot-max", 5*time.Second, "longest slot time")
	flag.IntVar(&o.perChild, "per-child", 2500, "agents per child process (each needs 2 file descriptors)")
	flag.DurationVar(&o.scrape, "scrape", 15*time.Second, "how often the coordinator's /metrics is read")
	flag.StringVar(&o.dir, "dir", "/var/tmp", "where the work directory (binaries, certificates, state file, progress) is made: a disk, not tmpfs")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (it is kept anyway when a run fails)")
	flag.BoolVar(&o.gctrace, "gctrace", false, "run the coordinator with GODEBUG=gctrace=1 (its GC lines go to progress.log)")
	flag.StringVar(&o.logLevel, "log-level", "warn", "the coordinator's --log-level (warn is its default)")
	flag.Parse()
	var errs []error
	if o.agents < 1 {
		errs = append(errs, fmt.Errorf("-agents %d: want at least 1", o.agents))
	}
	if o.perChild < 1 {
		errs = append(errs, fmt.Errorf("-per-child %d: want at least 1", o.perChild))
	}
	if o.slotMin <= 0 || o.slotMax < o.slotMin {
		errs = append(errs, fmt.Errorf("-slot-min %s, -slot-max %s: want 0 < min <= max", o.slotMin, o.slotMax))
	}
	if o.scrape <= 0 {
		errs = append(errs, fmt.Errorf("-scrape %s: want a positive interval", o.scrape))
	}
	return o, errors.Join(errs...)
}

func run() (err error) {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := repoRoot(ctx)
	if err != nil {
		return fmt.Errorf("run it inside the haroll repository: %w", err)
	}
	if err := checkDisk(o.dir); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(o.dir, "haroll-bench-fleet-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil || o.keep {
			fmt.Fprintf(os.Stderr, "bench-fleet: kept %s (binaries, certificates, state files, progress, results)\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	logf("building haroll from the tree (%s)", treeRev(ctx, root))
	tree, err := buildTree(ctx, root, dir)
	if err != nil {
		return err
	}
	builds := []build{tree}
	if o.baseline != "" {
		logf("building haroll at %s", o.baseline)
		base, err := buildAt(ctx, root, o.baseline, dir)
		if err != nil {
			return err
		}
		builds = []build{base, tree}
	}
	pkiDir := filepath.Join(dir, "pki")
	p, err := makePKI(ctx, tree.bin, pkiDir)
	if err != nil {
		return err
	}
	var all []figures
	for _, b := range builds {
		f, err := measureBuild(ctx, o, b, p, filepath.Join(dir, b.label))
		if err != nil {
			return err
		}
		all = append(all, f)
	}
	fmt.Printf("\nfleet benchmark: %d agents, batch 35%%, slot times %s..%s (seed %d), %d cores, %s\n\n",
		o.agents, o.slotMin, o.slotMax, o.seed, runtime.NumCPU(), runtime.Version())
	writeTable(os.Stdout, all)
	fmt.Println()
	for _, f := range all {
		writeLine(os.Stdout, f)
	}
	return nil
}

// measureBuild runs build b against a fresh fleet, in dir.
func measureBuild(ctx context.Context, o options, b build, p pki, dir string) (figures, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return figures{}, err
	}
	logf("%s: starting %d agents in child processes", b.label, o.agents)
	spec := childSpec{Seed: o.seed, SlotMin: o.slotMin, SlotMax: o.slotMax,
		TLS: agentTLS{Cert: p.agentCert, Key: p.agentKey, ClientCA: p.ca, AllowedClients: []string{coordinatorName}}}
	fl, err := startFleet(ctx, o.agents, o.perChild, spec, dir)
	if err != nil {
		return figures{}, err
	}
	logf("%s: rollout of %d agents (progress in %s)", b.label, o.agents, filepath.Join(dir, "progress.log"))
	run, runErr := runCoordinator(ctx, b.bin, dir, fl.addrs, coordinatorSetup{pki: p, scrape: o.scrape, gctrace: o.gctrace, logLevel: o.logLevel})
	agentsCPU, stopErr := fl.stop()
	if runErr != nil {
		return figures{}, fmt.Errorf("%s: %w", b.label, runErr)
	}
	if stopErr != nil {
		return figures{}, stopErr
	}
	if t := run.result.Totals; t.Done != o.agents {
		return figures{}, fmt.Errorf("%s: %d of %d hosts done (%d failed): %s", b.label, t.Done, o.agents, t.Failed, run.result.Error)
	}
	cs, err := fl.calls()
	if err != nil {
		return figures{}, err
	}
	f, err := measure(b.label, run, fl.addrs, cs, agentsCPU)
	if err != nil {
		return figures{}, err
	}
	logf("%s: total %s, ideal %s", b.label, secs(f.total), secs(f.ideal))
	return f, nil
}

// tmpfsMagic is statfs(2)'s f_type of a tmpfs.
const tmpfsMagic = 0x01021994

// checkDisk refuses a dir on tmpfs: the state file must be on a real disk,
// where its fsyncs cost what they cost in production.
func checkDisk(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("-dir %s: %w", dir, err)
	}
	if st.Type == tmpfsMagic {
		return fmt.Errorf("-dir %s is on tmpfs: the state file must be on a disk (pass -dir /var/tmp or a directory under /work)", dir)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-fleet: "+format+"\n", args...)
}
