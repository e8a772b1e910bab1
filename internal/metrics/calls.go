package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// Calls counts the agent's HAProxy runtime API and Docker Engine API calls,
// their errors and their latency, by wrapping the agent's HAProxy and Docker
// interfaces: runtime and docker know nothing of it. A call that ends with
// context.Canceled (the agent shutting down, a caller gone) is counted but
// not as an error; every other error is, including answers such as "no
// such container" that the agent expects at times.
type Calls struct {
	haproxy, docker callMetrics
}

// The ops of each system, as label values.
var (
	haproxyOps = []string{"server", "backend", "admin", "set_weight", "set_state", "set_addr", "force_health_down", "leave_maint", "shutdown_sessions", "info", "socket_owner", "servers_state"}
	dockerOps  = []string{"inspect", "ensure_image", "clone", "start", "stop", "rename", "remove", "wait_healthy"}
)

// NewCalls registers the call metrics of both systems on reg, with a zero
// series for every op. It panics if they are already registered.
func NewCalls(reg prometheus.Registerer) *Calls {
	c := &Calls{haproxy: newCallMetrics("haproxy", "HAProxy runtime API", haproxyOps), docker: newCallMetrics("docker", "Docker Engine API", dockerOps)}
	c.haproxy.register(reg)
	c.docker.register(reg)
	return c
}

// HAProxy returns h with every call counted.
func (c *Calls) HAProxy(h agent.HAProxy) agent.HAProxy { return &haproxyCalls{next: h, m: &c.haproxy} }

// Docker returns d with every call counted.
func (c *Calls) Docker(d agent.Docker) agent.Docker { return &dockerCalls{next: d, m: &c.docker} }

type callMetrics struct {
	calls, errors *prometheus.CounterVec
	latency       *prometheus.HistogramVec
}

func newCallMetrics(system, what string, ops []string) callMetrics {
	m := callMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haroll_" + system + "_calls_total",
			Help: what + " calls made by the agent, by op.",
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haroll_" + system + "_errors_total",
			Help: what + " calls that returned an error (a cancellation is not one), by op.",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "haroll_" + system + "_call_duration_seconds",
			Help:    what + " call latency, by op, errors included.",
			Buckets: callBuckets,
		}, []string{"op"}),
	}
	for _, op := range ops {
		m.calls.WithLabelValues(op)
		m.errors.WithLabelValues(op)
		m.latency.WithLabelValues(op)
	}
	return m
}

func (m *callMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.calls, m.errors, m.latency)
}

// done counts a call to op begun at start, and returns its err.
func (m *callMetrics) done(op string, start time.Time, err error) error {
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.calls.WithLabelValues(op).Inc()
	if err != nil && !errors.Is(err, context.Canceled) {
		m.errors.WithLabelValues(op).Inc()
	}
	return err
}

type haproxyCalls struct {
	next agent.HAProxy
	m    *callMetrics
}

func (h *haproxyCalls) Server(ctx context.Context, backend, server string) (runtime.ServerStat, error) {
	t := time.Now()
	st, err := h.next.Server(ctx, backend, server)
	return st, h.m.done("server", t, err)
}

func (h *haproxyCalls) Backend(ctx context.Context, backend string) ([]runtime.ServerStat, error) {
	t := time.Now()
	st, err := h.next.Backend(ctx, backend)
	return st, h.m.done("backend", t, err)
}

func (h *haproxyCalls) Admin(ctx context.Context, backend, server string) (runtime.Admin, error) {
	t := time.Now()
	a, err := h.next.Admin(ctx, backend, server)
	return a, h.m.done("admin", t, err)
}

func (h *haproxyCalls) SetWeight(ctx context.Context, backend, server string, weight int) error {
	t := time.Now()
	return h.m.done("set_weight", t, h.next.SetWeight(ctx, backend, server, weight))
}

func (h *haproxyCalls) SetState(ctx context.Context, backend, server string, state runtime.State) error {
	t := time.Now()
	return h.m.done("set_state", t, h.next.SetState(ctx, backend, server, state))
}

func (h *haproxyCalls) SetAddr(ctx context.Context, backend, server, ip string, port int) error {
	t := time.Now()
	return h.m.done("set_addr", t, h.next.SetAddr(ctx, backend, server, ip, port))
}

func (h *haproxyCalls) ForceHealthDown(ctx context.Context, backend, server string) error {
	t := time.Now()
	return h.m.done("force_health_down", t, h.next.ForceHealthDown(ctx, backend, server))
}

func (h *haproxyCalls) LeaveMaint(ctx context.Context, backend, server string, to runtime.State) error {
	t := time.Now()
	return h.m.done("leave_maint", t, h.next.LeaveMaint(ctx, backend, server, to))
}

func (h *haproxyCalls) ShutdownSessions(ctx context.Context, backend, server string) error {
	t := time.Now()
	return h.m.done("shutdown_sessions", t, h.next.ShutdownSessions(ctx, backend, server))
}

func (h *haproxyCalls) Info(ctx context.Context) (runtime.Info, error) {
	t := time.Now()
	i, err := h.next.Info(ctx)
	return i, h.m.done("info", t, err)
}

func (h *haproxyCalls) SocketOwner(ctx context.Context) (int, error) {
	t := time.Now()
	pid, err := h.next.SocketOwner(ctx)
	return pid, h.m.done("socket_owner", t, err)
}

func (h *haproxyCalls) ServersState(ctx context.Context) (string, error) {
	t := time.Now()
	s, err := h.next.ServersState(ctx)
	return s, h.m.done("servers_state", t, err)
}

type dockerCalls struct {
	next agent.Docker
	m    *callMetrics
}

func (d *dockerCalls) Inspect(ctx context.Context, nameOrID string) (docker.Container, error) {
	t := time.Now()
	c, err := d.next.Inspect(ctx, nameOrID)
	return c, d.m.done("inspect", t, err)
}

func (d *dockerCalls) EnsureImage(ctx context.Context, ref string, progress func(docker.PullProgress)) (string, error) {
	t := time.Now()
	id, err := d.next.EnsureImage(ctx, ref, progress)
	return id, d.m.done("ensure_image", t, err)
}

func (d *dockerCalls) Clone(ctx context.Context, from, image, name string, moves ...docker.HostPortMove) (string, error) {
	t := time.Now()
	id, err := d.next.Clone(ctx, from, image, name, moves...)
	return id, d.m.done("clone", t, err)
}

func (d *dockerCalls) Start(ctx context.Context, id string) error {
	t := time.Now()
	return d.m.done("start", t, d.next.Start(ctx, id))
}

func (d *dockerCalls) Stop(ctx context.Context, id string) error {
	t := time.Now()
	return d.m.done("stop", t, d.next.Stop(ctx, id))
}

func (d *dockerCalls) Rename(ctx context.Context, id, name string) error {
	t := time.Now()
	return d.m.done("rename", t, d.next.Rename(ctx, id, name))
}

func (d *dockerCalls) Remove(ctx context.Context, id string) error {
	t := time.Now()
	return d.m.done("remove", t, d.next.Remove(ctx, id))
}

func (d *dockerCalls) WaitHealthy(ctx context.Context, id string, startInterval time.Duration) error {
	t := time.Now()
	return d.m.done("wait_healthy", t, d.next.WaitHealthy(ctx, id, startInterval))
}
