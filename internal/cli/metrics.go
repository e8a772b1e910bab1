package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/internal/metrics"
	"github.com/haroll/haroll/rollout"
)

// metricsShutdown bounds the wait for scrapes in progress on exit.
const metricsShutdown = 5 * time.Second

// agentMetrics are the agent daemon's metrics; nil when metrics.listen is
// empty, and then every method does nothing.
type agentMetrics struct {
	reg   *prometheus.Registry
	calls *metrics.Calls
	obs   *metrics.Observer
}

func newAgentMetrics(cfg agent.Config) *agentMetrics {
	if cfg.Metrics.Listen == "" {
		return nil
	}
	names := make([]string, len(cfg.Slots))
	for i, s := range cfg.Slots {
		names[i] = s.Name
	}
	reg := metrics.NewRegistry()
	return &agentMetrics{reg: reg, calls: metrics.NewCalls(reg), obs: metrics.NewObserver(reg, names)}
}

// wrap returns hp and dk with their calls counted, and the options that
// make the agent report to the observer.
func (m *agentMetrics) wrap(hp agent.HAProxy, dk agent.Docker) (agent.HAProxy, agent.Docker, []agent.Option) {
	if m == nil {
		return hp, dk, nil
	}
	return m.calls.HAProxy(hp), m.calls.Docker(dk), []agent.Option{agent.WithObserver(m.obs)}
}

// serve adds a's slots, read at scrape time, and serves every metric on
// addr; stop shuts the server down.
func (m *agentMetrics) serve(a *agent.Agent, addr string) (stop func(), err error) {
	if m == nil {
		return func() {}, nil
	}
	m.reg.MustRegister(metrics.NewSlots(a, metrics.DefaultStatusTimeout))
	_, stop, err = startMetricsServer(addr, m.reg)
	return stop, err
}

// rolloutMetrics serve a rollout's progress; nil when metrics_listen is
// empty, and then every method does nothing.
type rolloutMetrics struct {
	m    *metrics.Rollout
	addr string // where it listens
	stop func()
}

// serveRolloutMetrics serves the progress of a rollout over hosts on addr
// ("" serves nothing).
func serveRolloutMetrics(addr string, hosts []string) (*rolloutMetrics, error) {
	if addr == "" {
		return nil, nil
	}
	reg := metrics.NewRegistry()
	r := &rolloutMetrics{m: metrics.NewRollout(reg, hosts)}
	var err error
	if r.addr, r.stop, err = startMetricsServer(addr, reg); err != nil {
		return nil, err
	}
	return r, nil
}

// events returns next with the metrics fed first.
func (r *rolloutMetrics) events(next func(rollout.Event)) func(rollout.Event) {
	if r == nil {
		return next
	}
	return func(e rollout.Event) {
		r.m.Event(e)
		next(e)
	}
}

// finish records the rollout's result.
func (r *rolloutMetrics) finish(res rollout.Result) {
	if r != nil {
		r.m.Finish(res)
	}
}

// close stops serving.
func (r *rolloutMetrics) close() {
	if r != nil {
		r.stop()
	}
}

// startMetricsServer serves reg on addr and logs where; it returns the
// address it listens on.
func startMetricsServer(addr string, reg *prometheus.Registry) (listening string, stop func(), err error) {
	log := slog.Default().With("metrics_listen", addr)
	srv, err := metrics.Listen(addr, reg, log)
	if err != nil {
		return "", nil, err
	}
	log.Info("serving metrics", "url", "http://"+srv.Addr()+"/metrics")
	return srv.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("metrics server shutdown", "error", err)
		}
	}, nil
}
