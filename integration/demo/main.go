// Command demo runs haroll's main job on an embedded setup: it builds the
// test app (v1 and v2, FROM scratch), starts HAProxy with three app
// containers, sends load through HAProxy, runs `haroll redeploy` from v1 to
// v2, and prints the requests served and failed and the time of every slot.
//
//	go run ./integration/demo            (or: make demo)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	rate := flag.Int("rate", 250, "requests per second through HAProxy")
	boot := flag.Duration("boot", time.Second, "the app's boot delay")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "the app's warm-up (health 503) after boot")
	inter := flag.Duration("inter", harness.DefaultInter, "HAProxy check interval")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	dir, err := os.MkdirTemp("", "haroll-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	step := func(msg string) { fmt.Printf("==> %s\n", msg) }

	step("building haroll and the test app images (FROM scratch)")
	bin, err := harness.BuildHaroll(ctx, dir)
	if err != nil {
		return err
	}
	images, err := harness.BuildVersions(ctx, "haroll-demo-app", harness.AppProfile{BootDelay: *boot, Warmup: *warmup, LatencyMax: 30 * time.Millisecond})
	if err != nil {
		return err
	}
	step("starting HAProxy and 3 app containers on " + images.V1 + " (weights 7, 3, 5)")
	h, err := harness.StartHost(ctx, harness.HostOptions{Dir: dir, Name: fmt.Sprintf("harolldemo%d", os.Getpid()),
		Image: images.V1, Weights: []int{7, 3, 5}, Addressing: harness.FixedPorts, Inter: *inter})
	if err != nil {
		return err
	}
	defer h.Close()
	rise := harness.DefaultRise

	step(fmt.Sprintf("load: %d POST/s through %s, plus a 3 s request every 500 ms", *rate, h.URL("/")))
	stopLoad := loadgen.Start(ctx, loadgen.Options{URL: h.URL("/"), Rate: *rate,
		SlowURL: h.URL("/slow?ms=3000"), SlowEvery: 500 * time.Millisecond})
	time.Sleep(time.Second)

	step("haroll redeploy --image " + images.V2)
	cmd := exec.CommandContext(ctx, bin, "redeploy", "--config", h.AgentYAML, "--image", images.V2, "--output", "json")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stdout // progress lines go to stderr in json mode
	redeployErr := cmd.Run()
	time.Sleep(1500 * time.Millisecond)
	res := stopLoad()

	var rep agent.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return fmt.Errorf("reading haroll's report: %w (%s)", err, out.String())
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "slot\tresult\tdrain\tstop\tboot-to-healthy\thealth gate\trestore\ttotal\tprobe-to-restored\trise x inter\t")
	for _, s := range rep.Slots {
		ms := func(ps ...agent.Phase) string {
			var d time.Duration
			for _, p := range ps {
				d += s.Phases[p]
			}
			return d.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Slot, s.Result,
			ms(agent.PhaseDrain), ms(agent.PhaseStop), ms(agent.PhaseStart, agent.PhaseBoot), ms(agent.PhaseGate),
			ms(agent.PhaseRestore), s.Total.Round(time.Millisecond),
			ms(agent.PhaseAddress, agent.PhaseGate, agent.PhaseRestore), time.Duration(rise)*(*inter))
	}
	tw.Flush()
	fmt.Printf("\nrequests: %d served, %d failed, %d dropped by the load generator; 3 s requests: %d served, %d failed\n",
		res.OK, res.Failed, res.Dropped, res.SlowOK, res.SlowFailed)
	fmt.Printf("versions served: %v; in the last second: %v\n", res.ByVersion, res.LastVersions)
	for _, e := range res.Errors {
		fmt.Println("  error:", e)
	}
	if redeployErr != nil {
		return fmt.Errorf("haroll redeploy: %w", redeployErr)
	}
	if res.Lost() > 0 {
		return fmt.Errorf("%d requests lost", res.Lost())
	}
	return nil
}
