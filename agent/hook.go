package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/haroll/haroll/internal/hook"
)

// HooksConfig is the executables run at two points of a slot's replacement
// (hooks: {pre_drain: {command: [...], timeout: 30s}, post_replace: ...}).
// Each is run directly, never through a shell, with PATH and the HAROLL_*
// variables of hookEnv as its only environment; a hook that does not exit 0
// within its timeout fails the slot, which is rolled back. Set at the top
// level, a hook runs for every slot; a slot's own hook replaces it (command
// and timeout together).
type HooksConfig struct {
	// PreDrain runs before the slot's server or container is touched.
	PreDrain hook.Config `mapstructure:"pre_drain"`
	// PostReplace runs once the new container is booted and HAProxy points
	// at it, while the server is still in maintenance: no client request,
	// pinned or not, reaches the new container during it. The health gate
	// follows; the journal marks the container proven only after both.
	PostReplace hook.Config `mapstructure:"post_replace"`
}

// validate returns the problems of both hooks, named under key.
func (h HooksConfig) validate(key string) []error {
	return append(h.PreDrain.Validate(key+".pre_drain"), h.PostReplace.Validate(key+".post_replace")...)
}

// or returns h, with each hook h does not set taken from def.
func (h HooksConfig) or(def HooksConfig) HooksConfig {
	if !h.PreDrain.Set() {
		h.PreDrain = def.PreDrain
	}
	if !h.PostReplace.Set() {
		h.PostReplace = def.PostReplace
	}
	return h
}

// preDrain runs the slot's pre_drain hook, if any, as its own phase.
func (r *replacement) preDrain(ctx context.Context) error {
	return r.runHook(ctx, PhasePreDrain, r.p.slot.Hooks.or(r.a.cfg.Hooks).PreDrain, nil)
}

// postReplace runs the slot's post_replace hook, if any, as its own phase,
// telling it the new container and the address HAProxy reaches it at.
func (r *replacement) postReplace(ctx context.Context) error {
	return r.runHook(ctx, PhasePostReplace, r.p.slot.Hooks.or(r.a.cfg.Hooks).PostReplace,
		map[string]string{"HAROLL_NEW_CONTAINER_ID": r.e.NewID, "HAROLL_NEW_ADDR": r.target})
}

// runHook runs c (nothing when it has no command) with the slot's
// environment plus extra, logs its output, and returns an error wrapping
// ErrHookFailed (and the *hook.Error) when it did not exit 0.
func (r *replacement) runHook(ctx context.Context, phase Phase, c hook.Config, extra map[string]string) error {
	if !c.Set() {
		return nil
	}
	return r.step(phase, func() (string, error) {
		res, err := hook.Run(ctx, c, r.hookEnv(phase, extra))
		log := r.log.With("hook", phase, "command", c.Command[0], "exit_code", res.ExitCode, "duration", res.Duration)
		if out := strings.TrimSpace(res.Output); out != "" {
			log = log.With("output", out, "output_truncated", res.Truncated)
		}
		if err != nil {
			log.Warn("hook failed")
			// The *hook.Error says the exit code (or the timeout) and
			// quotes the tail of the output.
			return "", fmt.Errorf("%w: %s of slot %s: %w", ErrHookFailed, phase, r.p.slot.Name, err)
		}
		log.Info("hook passed")
		return c.Command[0] + ": exit 0", nil
	})
}

// hookEnv is what a slot's hook is told, besides PATH.
func (r *replacement) hookEnv(phase Phase, extra map[string]string) map[string]string {
	s := r.p.slot
	env := map[string]string{
		"HAROLL_PHASE":     string(phase),
		"HAROLL_SLOT":      s.Name,
		"HAROLL_BACKEND":   s.Backend,
		"HAROLL_SERVER":    s.Server,
		"HAROLL_CONTAINER": s.Container,
		"HAROLL_IMAGE":     r.image,
		"HAROLL_OLD_IMAGE": r.p.old.Image,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}
