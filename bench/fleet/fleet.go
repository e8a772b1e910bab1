package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// fleet is n simulated agents served by child processes of this program
// (so that their CPU and memory are not the coordinator's, nor the bench's).
type fleet struct {
	// addrs are the agents' addresses, by index: the inventory, in order.
	addrs    []string
	children []*child
}

// child is one agent process.
type child struct {
	spec  childSpec
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startFleet starts ceil(n/perChild) children serving agents 0..n-1, each
// agent built from base (seed, slot times, TLS), and waits until every one
// serves. The children's calls files go to dir. On error, the children
// started are stopped.
func startFleet(ctx context.Context, n, perChild int, base childSpec, dir string) (_ *fleet, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("re-executing the bench as an agent child: %w", err)
	}
	f := &fleet{}
	defer func() {
		if err != nil {
			_, _ = f.stop()
		}
	}()
	for first := 0; first < n; first += perChild {
		spec := base
		spec.First, spec.Count = first, min(perChild, n-first)
		spec.Calls = filepath.Join(dir, fmt.Sprintf("calls-%05d.txt", first))
		js, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), childEnv+"="+string(js))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("agent child %d..%d: %w", spec.First, spec.First+spec.Count-1, err)
		}
		f.children = append(f.children, &child{spec: spec, cmd: cmd, stdin: stdin})
		sc := bufio.NewScanner(stdout)
		got := 0
		for sc.Scan() && sc.Text() != readyLine {
			f.addrs = append(f.addrs, sc.Text())
			got++
		}
		if got != spec.Count {
			return nil, fmt.Errorf("agent child %d..%d served %d agents, want %d (its error is above)",
				spec.First, spec.First+spec.Count-1, got, spec.Count)
		}
	}
	return f, nil
}

// stop closes every child's stdin, waits for it and reads the calls its
// agents saw. cpu is the children's CPU time, user and system.
func (f *fleet) stop() (cpu time.Duration, err error) {
	var errs []error
	for _, c := range f.children {
		c.stdin.Close()
	}
	for _, c := range f.children {
		if werr := c.cmd.Wait(); werr != nil {
			errs = append(errs, fmt.Errorf("agent child %d..%d: %w", c.spec.First, c.spec.First+c.spec.Count-1, werr))
			continue
		}
		if ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return cpu, errors.Join(errs...)
}

// calls reads every child's calls; call it after stop.
func (f *fleet) calls() ([]call, error) {
	var all []call
	for _, c := range f.children {
		cs, err := readCalls(c.spec.Calls)
		if err != nil {
			return nil, err
		}
		all = append(all, cs...)
	}
	return all, nil
}
