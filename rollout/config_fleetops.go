package rollout

import (
	"fmt"
	"time"
)

// RollbackConfig is the rollback's fast track (rollback.batch: a count or
// a share of the hosts put back at once).
type RollbackConfig struct {
	Batch string `mapstructure:"batch"`
}

// validateFleetOps checks on_failure, prepull_concurrency, rollback.batch
// and claim_ttl.
func (c Config) validateFleetOps() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.OnFailure {
	case OnFailureStop, OnFailureRollback, OnFailurePause:
	default:
		bad("on_failure: %q: want %s, %s or %s", c.OnFailure, OnFailureStop, OnFailureRollback, OnFailurePause)
	}
	if c.PrepullConcurrency < 1 || c.PrepullConcurrency > 1024 {
		bad("prepull_concurrency: %d: want 1..1024 hosts pulling at once", c.PrepullConcurrency)
	}
	if _, err := ParseSize(c.Rollback.Batch); err != nil {
		bad("rollback.batch: %w", err)
	}
	if c.ClaimTTL < time.Minute {
		bad("claim_ttl: %s: want at least 1m (a host stays claimed this long after the rollout's last request to it)", c.ClaimTTL)
	}
	return errs
}

// RollbackBatch is rollback.batch, parsed (Validate checked it).
func (c Config) RollbackBatch() Size {
	s, _ := ParseSize(c.Rollback.Batch)
	return s
}
