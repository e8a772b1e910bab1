package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// image is what the rollout rolls out.
const image = "app:v2"

// coordinatorRun is what one `haroll rollout` process did, seen from
// outside: its wall time, its resources, its JSON result and the scrapes of
// its metrics.
type coordinatorRun struct {
	start, exit time.Time
	cpu         time.Duration
	maxRSS      int64 // bytes
	result      result
	stateBytes  int64 // the state file's size at the end
	progress    string
	scrapes     scrapes
}

// result is the part of `haroll rollout --output json` the figures need.
// StateWrites is nil for a build that does not report it.
type result struct {
	Plan struct {
		Batches []planBatch `json:"batches"`
	} `json:"plan"`
	// Batches say when the coordinator started each batch.
	Batches []batchTiming `json:"batches"`
	Totals  struct {
		Hosts  int `json:"hosts"`
		Done   int `json:"done"`
		Failed int `json:"failed"`
	} `json:"totals"`
	Error       string       `json:"error"`
	StateWrites *stateWrites `json:"state_writes"`
}

// batchTiming is a batch of the result: when it started.
type batchTiming struct {
	Start time.Time `json:"start"`
}

// planBatch and planStep are a batch and a step of the result's plan.
type planBatch struct {
	Hosts []string   `json:"hosts"`
	Steps []planStep `json:"steps"`
}

type planStep struct {
	Slot  string   `json:"slot"`
	Hosts []string `json:"hosts"`
}

// stateWrites is the coordinator's own account of its state file writes
// (fsync'd), and of what they were: log records and whole snapshots.
type stateWrites struct {
	Count     int64 `json:"count"`
	TotalNS   int64 `json:"total_ns"`
	MaxNS     int64 `json:"max_ns"`
	Records   int64 `json:"records"`
	Snapshots int64 `json:"snapshots"`
}

// coordinatorSetup is the production configuration every build runs with.
type coordinatorSetup struct {
	pki      pki
	scrape   time.Duration // how often /metrics is read, as Prometheus would
	gctrace  bool
	logLevel string
}

// runCoordinator writes dir/coordinator.yaml and dir/fleet.txt (the
// inventory) and runs `bin rollout --config ... --image app:v2 --output json`
// with production settings: mutual TLS, a state file in dir (on disk),
// metrics served and scraped, the progress (stderr) to dir/progress.log and
// the JSON result (stdout) to dir/result.json. A coordinator that exits
// non-zero is an error that quotes the end of its progress.
func runCoordinator(ctx context.Context, bin, dir string, hosts []string, set coordinatorSetup) (coordinatorRun, error) {
	var run coordinatorRun
	inventory := filepath.Join(dir, "fleet.txt")
	if err := os.WriteFile(inventory, []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		return run, err
	}
	metricsAddr, err := freePort()
	if err != nil {
		return run, err
	}
	state := filepath.Join(dir, "rollout.json")
	config := filepath.Join(dir, "coordinator.yaml")
	// Every key as in configs/coordinator.yaml, with its defaults where
	// production keeps them.
	yaml := fmt.Sprintf(`inventory: %q
tls:
  cert: %q
  key: %q
  ca: %q
batch: 35%%
max_failures: "0"
connect_timeout: 5s
step_timeout: 10m
state_file: %q
metrics_listen: %q
`, inventory, set.pki.coordinatorCert, set.pki.coordinatorKey, set.pki.ca, state, metricsAddr)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		return run, err
	}
	run.progress = filepath.Join(dir, "progress.log")
	progress, err := os.Create(run.progress)
	if err != nil {
		return run, err
	}
	defer progress.Close()
	out, err := os.Create(filepath.Join(dir, "result.json"))
	if err != nil {
		return run, err
	}
	defer out.Close()

	cmd := exec.CommandContext(ctx, bin, "rollout", "--config", config, "--image", image, "--output", "json", "--log-level", set.logLevel)
	cmd.Stdout, cmd.Stderr = out, progress
	cmd.Env = os.Environ()
	if set.gctrace {
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
	}
	run.start = time.Now()
	if err := cmd.Start(); err != nil {
		return run, fmt.Errorf("start %s: %w", bin, err)
	}
	stopScrape := scrapeMetrics("http://"+metricsAddr+"/metrics", set.scrape)
	waitErr := cmd.Wait()
	run.exit = time.Now()
	run.scrapes = stopScrape()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		run.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		run.maxRSS = ru.Maxrss * 1024
	}
	if fi, err := os.Stat(state); err == nil {
		run.stateBytes = fi.Size()
	}
	if waitErr != nil {
		return run, fmt.Errorf("%s rollout: %w; the end of %s:\n%s", bin, waitErr, run.progress, tail(run.progress, 20))
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return run, err
	}
	if err := json.NewDecoder(out).Decode(&run.result); err != nil {
		return run, fmt.Errorf("%s: the JSON result: %w", out.Name(), err)
	}
	return run, nil
}

// scrapes counts the reads of the coordinator's /metrics: those that
// succeeded, the longest and the largest of them, and those that failed.
type scrapes struct {
	ok, failed int
	max        time.Duration
	bytes      int64
}

// scrapeMetrics reads url every interval until the returned function is
// called, which returns the counts. A coordinator not yet (or no longer)
// serving counts as a failed scrape, not an error.
func scrapeMetrics(url string, every time.Duration) (stop func() scrapes) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var s scrapes // owned by the goroutine until wg.Wait
	client := &http.Client{Timeout: every}
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			t0 := time.Now()
			resp, err := client.Get(url)
			var n int64
			if err == nil {
				n, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			if err != nil {
				s.failed++
				continue
			}
			s.ok++
			s.max = max(s.max, time.Since(t0))
			s.bytes = max(s.bytes, n)
		}
	})
	return func() scrapes { close(done); wg.Wait(); return s }
}

// freePort returns a 127.0.0.1 address no one listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("a free port for metrics_listen: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}
