package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Watchdog keeps systemd's watchdog fed while check passes, until ctx ends.
//
// systemd passes the unit's WatchdogSec= as $WATCHDOG_USEC (and the process
// it means as $WATCHDOG_PID). Without them, or when they name another
// process, Watchdog returns nil at once; a malformed value is an error.
// Otherwise it calls check right away and then every half interval, each time
// with a deadline of half the interval, and sends WATCHDOG=1 only when check
// returns nil. A failing check is logged (once, until check passes again) and
// no ping is sent, so that an agent that stays unhealthy for a whole
// WatchdogSec is killed and restarted by systemd. Watchdog returns nil when
// ctx ends.
func Watchdog(ctx context.Context, check func(context.Context) error, log *slog.Logger) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("systemd watchdog: %w: fix WatchdogSec= in the unit", err)
	}
	if interval == 0 {
		return nil
	}
	every := interval / 2
	log.Info("pinging the systemd watchdog", "watchdog_sec", interval.Seconds(), "every", every.String())
	tick := time.NewTicker(every)
	defer tick.Stop()
	healthy := true
	for {
		cctx, cancel := context.WithTimeout(ctx, every)
		err := check(cctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if healthy {
				log.Warn("unhealthy: not pinging the systemd watchdog; systemd restarts the agent if this lasts", "error", err, "watchdog_sec", interval.Seconds())
			}
			healthy = false
		default:
			if !healthy {
				log.Info("healthy again: pinging the systemd watchdog")
			}
			healthy = true
			if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
				log.Warn("sd_notify WATCHDOG=1 failed", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
