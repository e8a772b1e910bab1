package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// waitDrained polls HAProxy until the slot's server shows, in one answer,
// that it is in maintenance and has no session and no queued request: in
// maintenance no new request can reach it, so one such answer proves it
// empty (a sample of scur 0 at weight 0 proves nothing while pinned clients
// come). At ctx's deadline it returns ErrDrainTimeout with the last figures
// seen.
func (r *replacement) waitDrained(ctx context.Context) (runtime.ServerStat, error) {
	s := r.p.slot
	last, err := r.waitServer(ctx, func(st runtime.ServerStat) bool {
		// After a reload the old worker may still hold sessions that the
		// new worker's counters do not show.
		return st.InMaint() && st.Drained() && r.oldWorkersGone(ctx)
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return last, fmt.Errorf("%s/%s still has scur %d, qcur %d (status %s): %w", s.Backend, s.Server, last.Scur, last.Qcur, last.Status, ErrDrainTimeout)
	}
	return last, err
}

// waitServer polls the slot's server until done says so, and returns the
// last line of `show stat` it saw. A reload or restart of HAProxy seen on the
// way has the changes this replacement owns re-applied, and the wait goes on.
// So does a spell of HAProxy not answering (a restart, a hung socket): when
// ctx ends during one, the error says so rather than ctx's.
func (r *replacement) waitServer(ctx context.Context, done func(runtime.ServerStat) bool) (runtime.ServerStat, error) {
	a, s := r.a, r.p.slot
	var last runtime.ServerStat
	var down outage
	err := a.pollUntil(ctx, func() (bool, error) {
		reloaded, err := r.watchReload(ctx)
		var st runtime.ServerStat
		if err == nil && !reloaded {
			st, err = a.haproxy.Server(ctx, s.Backend, s.Server)
		}
		switch {
		case err != nil && ended(ctx):
			return false, err // the wait ran out, perhaps during an outage
		case transient(err):
			down.see(r.log, err)
			return false, nil
		}
		down.see(r.log, nil)
		if err != nil || reloaded {
			return false, err
		}
		last = st
		return done(st), nil
	})
	if err != nil && down.err != nil {
		return last, fmt.Errorf("haproxy has not answered for %s: %w", time.Since(down.since).Round(time.Millisecond), down.err)
	}
	return last, err
}

// freshCheck is the health gate: it takes the server out of maintenance
// into a forced `health down` (or forces it down, out of maintenance), then
// waits until HAProxy's own checks bring it fully up again. Only checks that
// complete after that count: one that completes while the server is in
// maintenance is ignored by HAProxy. A check started against the old address
// before the server went into maintenance, and still in flight when it left,
// could count once: when a single success makes the server fully up
// (rise 1, fall 1), the gate is passed twice, since HAProxy runs one check
// of a server at a time.
func (r *replacement) freshCheck(ctx context.Context) (string, error) {
	checks := 0
	for round := 1; ; round++ {
		last, err := r.gateRound(ctx)
		if err != nil {
			return "", err
		}
		full := last.CheckRise + last.CheckFall - 1
		checks += full
		if full >= 2 || round == 2 {
			return fmt.Sprintf("%s %s after %d fresh checks", last.Status, last.CheckStatus, checks), nil
		}
	}
}

// gateRound forces the server's health down and waits for it to be fully up.
func (r *replacement) gateRound(ctx context.Context) (runtime.ServerStat, error) {
	a, s := r.a, r.p.slot
	err := r.hold(func() error {
		if r.e.Maint {
			return nil // leaveMaint below, outside this hold (it holds itself)
		}
		r.gating = true
		return a.haproxy.ForceHealthDown(ctx, s.Backend, s.Server)
	})
	if err == nil && r.inMaint() {
		err = r.leaveMaint(ctx)
	}
	defer func() { _ = r.hold(func() error { r.gating = false; return nil }) }()
	if err != nil {
		return runtime.ServerStat{}, err
	}
	last, err := r.waitServer(ctx, runtime.ServerStat.FullyUp)
	if errors.Is(err, context.DeadlineExceeded) {
		return last, fmt.Errorf("haproxy check of %s/%s: status %q, check %s, health %d/%d: %w",
			s.Backend, s.Server, last.Status, last.CheckStatus, last.CheckHealth, last.CheckRise+last.CheckFall-1, ErrNotHealthy)
	}
	return last, err
}

// inMaint reports whether haroll holds the server in maintenance.
func (r *replacement) inMaint() bool {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	return r.e.Maint
}

// waitContainerReady works out the container's address and probes it until
// the app answers, Docker reporting the container unhealthy or exited
// ending the wait with that error. With health.docker wait, the image's
// healthcheck (when it has one) must then pass too: haroll runs it itself
// at once and every health.docker_start_interval, or waits for Docker's
// own checks. The probe comes first because it is cheap: on 2 cores an exec
// costs ~50 ms of CPU, and runs from the container's start on would be
// spent on an app still booting. Docker not answering (a daemon restart:
// with live-restore the container runs on) is waited out within ctx.
func (a *Agent) waitContainerReady(ctx context.Context, id string, s SlotConfig) (address, error) {
	log := a.log.With("slot", s.Name, "container", shortID(id))
	addr, err := a.probeUntilReady(ctx, log, id, s)
	if err != nil || a.cfg.Health.Docker == DockerHealthWatch {
		return addr, err
	}
	if err := a.retry(ctx, log, "wait for Docker health", func() error { return a.docker.WaitHealthy(ctx, id, a.cfg.Health.DockerStartInterval) }); err != nil {
		return addr, notHealthy(ctx, err)
	}
	// Once more, cheaply: the address is read again and the app must still
	// answer there (a crash and restart during the healthcheck's wait gives
	// an ephemeral port a new number).
	return a.probeUntilReady(ctx, log, id, s)
}

// vetoInspectEvery bounds how often a failing probe asks Docker about the
// container: an inspect is cheap, but not at every probe.
const vetoInspectEvery = 200 * time.Millisecond

// dockerVeto is Docker's say on a container that should be booting: it
// exited or is restarting (ErrExited), or its healthcheck failed
// (ErrUnhealthy), with why; nil otherwise.
func dockerVeto(c docker.Container, id string) error {
	switch {
	case !c.Running || c.Restarting:
		return fmt.Errorf("container %s: %w: %s", shortID(id), docker.ErrExited, c.Trouble)
	case c.Health == "unhealthy":
		return fmt.Errorf("container %s: Docker reports it unhealthy: %w after %s", shortID(id), docker.ErrUnhealthy, c.Trouble)
	}
	return nil
}

// probeUntilReady works out the container's address and probes it until the
// app answers; Docker reporting the container unhealthy or exited ends the
// wait with that error.
func (a *Agent) probeUntilReady(ctx context.Context, log *slog.Logger, id string, s SlotConfig) (address, error) {
	var c docker.Container
	if err := a.retry(ctx, log, "inspect container", func() (err error) {
		c, err = a.docker.Inspect(ctx, id)
		return err
	}); err != nil {
		return address{}, notHealthy(ctx, err)
	}
	// A container that died at once has no address left: say so, not that
	// its configuration publishes nothing.
	if err := dockerVeto(c, id); err != nil {
		return address{}, err
	}
	addr, err := containerAddress(c, s)
	if err != nil {
		return address{}, err
	}
	var lastErr error
	asked := time.Now()
	err = a.pollUntil(ctx, func() (bool, error) {
		if lastErr = a.probe(ctx, addr); lastErr == nil {
			return true, nil
		}
		if time.Since(asked) < vetoInspectEvery {
			return false, nil
		}
		asked = time.Now()
		c, err := a.docker.Inspect(ctx, id)
		switch {
		case transient(err):
			return false, nil // the probe goes on deciding
		case err != nil:
			return false, err
		}
		return false, dockerVeto(c, id)
	})
	if err != nil {
		return addr, fmt.Errorf("probe %s of container %s: %v: %w", addr, shortID(id), lastErr, notHealthy(ctx, err))
	}
	return addr, nil
}

// notHealthy turns a deadline into ErrNotHealthy and keeps other errors.
func notHealthy(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w within health.timeout: %w", ErrNotHealthy, err)
	}
	return err
}

// probeClient never reuses a connection, so each probe proves the app
// accepts new ones.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// probeApp is the agent's own check of a container: an HTTP GET of
// health.path expecting a 2xx or 3xx, or a TCP connect when the path is empty.
func (a *Agent) probeApp(ctx context.Context, addr address) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if a.cfg.Health.Path == "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+a.cfg.Health.Path, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", a.cfg.Health.Path, resp.Status)
	}
	return nil
}

// pollUntil calls done every a.poll until it returns true or an error, or
// ctx ends (ctx's error comes back).
func (a *Agent) pollUntil(ctx context.Context, done func() (bool, error)) error {
	t := time.NewTicker(a.poll)
	defer t.Stop()
	for {
		ok, err := done()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // the call failed because the wait ran out
			}
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ended reports whether ctx is done or past its deadline: a call cut at the
// deadline (a dial's i/o timeout) may return a moment before ctx's own timer
// has fired, and is the wait running out, not HAProxy failing to answer.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
