package agent

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// transient reports whether err says HAProxy or Docker could not be reached
// or did not answer in time (a restart, a hung daemon, a socket gone for a
// moment) rather than that it refused what was asked.
func transient(err error) bool {
	for _, t := range []error{runtime.ErrUnreachable, runtime.ErrTimeout, runtime.ErrEmptyReply, docker.ErrUnreachable, docker.ErrTimeout} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// retry calls fn until it succeeds, fails for a reason that is not
// transient, or ctx ends; it returns fn's last error. It is what a rollback
// and the final restore use, so that HAProxy or Docker restarting under them
// delays the undo instead of leaving a server drained.
func (a *Agent) retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	begin := time.Now()
	for warned := false; ; warned = true {
		err := fn()
		if err == nil || !transient(err) {
			if warned && err == nil {
				log.Warn("haproxy or docker answers again: "+what+" done", "after", time.Since(begin).Round(time.Millisecond))
			}
			return err
		}
		if !warned {
			log.Warn("haproxy or docker does not answer: retrying "+what, "error", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(4 * a.poll):
		}
	}
}

// outage follows a wait's spell without answers from HAProxy.
type outage struct {
	since time.Time
	err   error
}

// see records the outcome of one poll: a transient error starts or extends
// the outage, anything else ends it.
func (o *outage) see(log *slog.Logger, err error) {
	switch {
	case err != nil && o.err == nil:
		o.since = time.Now()
		log.Warn("haproxy does not answer: waiting for it (a restart?)", "error", err)
	case err == nil && o.err != nil:
		log.Warn("haproxy answers again", "after", time.Since(o.since).Round(time.Millisecond))
	}
	o.err = err
}
