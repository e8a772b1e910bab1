package agent

import (
	"context"
	"errors"
)

// pairConfig is what haproxy.cfg says about the backend of a blue/green
// slot: which servers it declares, which of them `disabled`, and where
// HAProxy loads the servers' states from when it starts or reloads.
type pairConfig struct {
	// StateFile is the absolute path of the file HAProxy loads this
	// backend's server states from at a (re)load: the global
	// `server-state-file` (joined to `server-state-base` when relative),
	// with `load-server-state-from-file global` in the backend or its
	// defaults. "" when HAProxy loads none; Why then says what is missing.
	StateFile string
	Why       string
	// Disabled has every server the backend declares, true when it is
	// declared `disabled`.
	Disabled map[string]bool
}

// pair reads what haproxy.cfg says about backend (see pairConfig). The error
// says the configuration could not be read, or has no such backend.
func (c haproxyConfig) pair(backend string) (pairConfig, error) {
	return pairConfig{}, errors.New("pair: not implemented yet")
}

// saveServerState writes HAProxy's `show servers state` to path, atomically
// (a temporary file in the same directory, fsynced, renamed over it), so
// that a reload at any moment loads the servers' states as they are now:
// which side of each pair is live, its weight and address.
func (a *Agent) saveServerState(ctx context.Context, path string) error {
	return errors.New("saveServerState: not implemented yet")
}
