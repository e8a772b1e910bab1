package rollout

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/haroll/haroll/internal/hook"
)

// Hooks are the executables the coordinator runs around a rollout
// (hooks: {pre: {command: [...], timeout: 30s}, post: ...}), each directly,
// never through a shell, with PATH and the HAROLL_* variables below as its
// only environment.
type Hooks struct {
	// Pre runs after the preflight (every host answered, none busy) and
	// before the first batch, with HAROLL_PHASE=pre and HAROLL_IMAGE; Resume
	// runs it too. If it does not exit 0 within its timeout, no host is
	// touched and the rollout fails with ErrPreflight and ErrHookFailed.
	Pre hook.Config `mapstructure:"pre"`
	// Post runs once a rollout that passed Pre has ended, however it ended
	// (also when interrupted: it gets its own timeout), with HAROLL_PHASE=post,
	// HAROLL_IMAGE, HAROLL_RESULT (done, failed or stopped: see
	// rolloutOutcome), HAROLL_HOSTS_DONE and HAROLL_HOSTS_FAILED. If it does
	// not exit 0, the rollout's error wraps ErrHookFailed: what was rolled
	// stays rolled, nothing is undone.
	Post hook.Config `mapstructure:"post"`
}

// Rollout outcomes, as HAROLL_RESULT tells the post hook.
const (
	OutcomeDone    = "done"    // every planned host done
	OutcomeFailed  = "failed"  // every batch ran, and a host failed
	OutcomeStopped = "stopped" // batches left unrun: max_failures, interrupted, state file unwritable
)

// validate returns the problems of both hooks, named under key.
func (h Hooks) validate(key string) []error {
	return append(h.Pre.Validate(key+".pre"), h.Post.Validate(key+".post")...)
}

// rolloutOutcome says how a rollout ended, for the post hook.
func rolloutOutcome(res Result, err error) string {
	switch {
	case err == nil:
		return OutcomeDone
	case res.Stopped != "":
		return OutcomeStopped
	default:
		return OutcomeFailed
	}
}

// preHook runs e.Hooks.Pre, if set; an error means: touch no host.
func (r *run) preHook(ctx context.Context) error {
	if err := r.runHook(ctx, "pre", r.e.Hooks.Pre, nil); err != nil {
		return fmt.Errorf("%w: %w", ErrPreflight, err)
	}
	return nil
}

// postHook runs e.Hooks.Post, if set, once the rollout ended with res and
// err, and returns them, the error joined with the hook's failure.
func (r *run) postHook(ctx context.Context, res Result, err error) (Result, error) {
	if !r.e.Hooks.Post.Set() {
		return res, err
	}
	outcome := rolloutOutcome(res, err)
	// An interrupted rollout is still reported to the hook.
	herr := r.runHook(context.WithoutCancel(ctx), "post", r.e.Hooks.Post, map[string]string{
		"HAROLL_RESULT":       outcome,
		"HAROLL_HOSTS_DONE":   strconv.Itoa(res.Totals.Done),
		"HAROLL_HOSTS_FAILED": strconv.Itoa(res.Totals.Failed),
	})
	if herr == nil {
		return res, err
	}
	if err == nil {
		err = fmt.Errorf("the rollout is done, but: %w (a post hook cannot undo anything)", herr)
	} else {
		err = errors.Join(err, herr)
	}
	res.Error = err.Error()
	return res, err
}

// runHook runs c (nothing when it has no command) with HAROLL_PHASE=name,
// HAROLL_IMAGE and extra, reports it as an EventHook and logs its output.
func (r *run) runHook(ctx context.Context, name string, c hook.Config, extra map[string]string) error {
	if !c.Set() {
		return nil
	}
	env := map[string]string{"HAROLL_PHASE": name, "HAROLL_IMAGE": r.e.Image}
	for k, v := range extra {
		env[k] = v
	}
	start := time.Now()
	res, err := hook.Run(ctx, c, env)
	ev := Event{Kind: EventHook, Time: start, Phase: name, Duration: res.Duration, Detail: c.Command[0] + ": exit 0"}
	log := r.log.With("hook", name, "command", c.Command[0], "exit_code", res.ExitCode, "duration", res.Duration)
	if out := strings.TrimSpace(res.Output); out != "" {
		log = log.With("output", out, "output_truncated", res.Truncated)
	}
	if err != nil {
		// The *hook.Error says the exit code (or the timeout) and quotes the
		// tail of the output.
		err = fmt.Errorf("%w: %s: %w", ErrHookFailed, name, err)
		ev.Detail, ev.Err = "", err.Error()
		log.Warn("hook failed")
	} else {
		log.Info("hook passed")
	}
	r.emit(ev)
	return err
}
