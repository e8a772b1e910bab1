package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/haroll/haroll/agent"
	"github.com/haroll/haroll/docker"
	"github.com/haroll/haroll/runtime"
)

// prepare checks --output, loads the agent config and returns the host's
// slots: through the running agent when its socket answers (so its host lock
// and journal stay the one authority), else in-process.
func prepare(cmd *cobra.Command, output string) (slots, func(), error) {
	if output != "text" && output != "json" {
		return nil, nil, usageError("--output %q: want text or json", output)
	}
	cfg, err := loadAgentConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	if r, ok := dialLocalAgent(cmd.Context(), cfg.Socket); ok {
		slog.Info("using the running agent", "socket", cfg.Socket)
		return r, r.close, nil
	}
	a, closeAgent, err := openAgent(cmd.Context(), cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	return inProcess{a}, closeAgent, nil
}

// inProcess is the host's agent in this process: the CLI itself, on this
// host, is its caller.
type inProcess struct{ *agent.Agent }

func (p inProcess) Redeploy(ctx context.Context, req agent.Request, events func(agent.Event)) (agent.Report, error) {
	req.Caller = "local"
	return p.Agent.Redeploy(ctx, req, events)
}

func (p inProcess) FenceState(context.Context) (agent.FenceState, error) { return p.Agent.FenceState() }

func (p inProcess) History(_ context.Context, q agent.HistoryQuery) ([]agent.HistoryEntry, error) {
	return p.Agent.History(q)
}

// openAgent connects to HAProxy and Docker as cfg says and returns an agent
// over them, counted by m when it is not nil. Both are checked here, so an
// unreachable socket is reported before anything is touched.
func openAgent(ctx context.Context, cfg agent.Config, m *agentMetrics) (*agent.Agent, func(), error) {
	hp, err := runtime.New(cfg.HAProxy.Socket, cfg.HAProxy.Timeout)
	if err != nil {
		return nil, nil, err
	}
	if err := hp.Ping(ctx); err != nil {
		return nil, nil, fmt.Errorf("haproxy.socket %s: %w: check that HAProxy runs with `stats socket %s level admin` and that haroll may open it", cfg.HAProxy.Socket, err, cfg.HAProxy.Socket)
	}
	dk, err := docker.New(ctx, cfg.Docker.Host, cfg.Docker.Timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("docker: %w", err)
	}
	h, d, opts := m.wrap(hp, dk)
	if cfg.HAProxy.MasterSocket != "" {
		master, err := runtime.NewMaster(cfg.HAProxy.MasterSocket, cfg.HAProxy.Timeout)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, agent.WithMaster(master))
	}
	return agent.New(cfg, h, d, slog.Default(), opts...), func() { dk.Close() }, nil
}
