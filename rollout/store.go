package rollout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/haroll/haroll/internal/tlsconf"
)

// Store keeps what a fleet's rollouts share: the fleet lock, the state of
// the rollout under way (for --resume), the decisions a person takes for
// its canary, and the history index of the rollouts that ended. FileStore
// keeps them in files beside the state file (one coordinator machine);
// EtcdStore in etcd, so that any machine with the configuration can resume,
// promote, abort or see who holds the lock.
//
// Only this package implements Store: the state writer and the decision
// polling reach the backend through its unexported methods.
type Store interface {
	Locker
	// ReadState reads the rollout state recorded last. None is an error
	// wrapping fs.ErrNotExist.
	ReadState(ctx context.Context) (*State, error)
	// RecordRollout adds rec to the history index.
	RecordRollout(ctx context.Context, rec RolloutRecord) error
	// Rollouts is the history index, newest (highest token) first; at most
	// limit records, every one when limit <= 0.
	Rollouts(ctx context.Context, limit int) ([]RolloutRecord, error)
	// Close lets go of the store's connections; a lease it handed out
	// should be released first (an etcd lease is lost with them).
	Close() error
	// String says where the store is: the state file's path, or etcd's
	// endpoints and prefix.
	String() string

	// stateBackend is where the state writer of a rollout holding lease
	// writes (lease may be nil: a store that guards its writes with the
	// lock then refuses them).
	stateBackend(lease Lease) stateBackend
	// decisions are the canary decisions of the rollout in the store.
	decisions(lease Lease) decisionStore
}

// stateBackend writes a rollout's state for the stateWriter: a snapshot of
// the whole state (a generation), then log records after it.
type stateBackend interface {
	// generation writes s whole as a new generation after prev (the
	// generation s was read at, 0: unknown), sets s.Version and
	// s.Generation, and returns the log to append to.
	generation(s *State, prev uint64) (stateLog, error)
	String() string
}

// stateLog is the log of one generation.
type stateLog interface {
	// append makes lines, n encoded records (encodeRecord), durable.
	append(lines []byte, n int) error
	// due reports whether the log holds enough to compact.
	due() bool
	generation() uint64
	close() error
}

// decisionStore keeps the decision a person took for a canary, and the
// decision lock that makes Decide's check and write, and the coordinator's
// taking of a decision and recording of the promotion, each one step (see
// lockDecisions).
type decisionStore interface {
	lock(ctx context.Context) (release func(), err error)
	// peek is the decision written, the zero Decision when there is none.
	peek(ctx context.Context) (Decision, error)
	write(ctx context.Context, d Decision) error
	// drop removes the decision written; none is not an error.
	drop(ctx context.Context) error
	String() string
}

// storeTimeout bounds one call of the executor to its store, which has no
// context of its own (the state writer's, the decision polling's).
const storeTimeout = 10 * time.Second

// LoadResumableFrom reads the state in s for `--resume`, as LoadResumable.
func LoadResumableFrom(ctx context.Context, s Store, image string) (*State, error) {
	st, err := s.ReadState(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no rollout state in %s: no rollout was started with this store", ErrNothingToResume, s)
	}
	if err != nil {
		return nil, err
	}
	if st.Complete {
		return nil, fmt.Errorf("%w: the rollout of %s recorded in %s is complete (%s, %s): start a new rollout with --image",
			ErrNothingToResume, st.Image, s, st.Outcome, st.Updated.Format(time.RFC3339))
	}
	if image != "" && image != st.Image {
		return nil, fmt.Errorf("%w: --image %s, but the unfinished rollout recorded in %s is of %s: resume without --image, or start over",
			ErrImageMismatch, image, s, st.Image)
	}
	return st, nil
}

// store is the Store the executor records into: Store, else the file store
// of StateFile, else none (nil: the state is kept in memory only).
func (e *Executor) store() Store {
	switch {
	case e.Store != nil:
		return e.Store
	case e.StateFile != "":
		return NewFileStore(e.StateFile)
	}
	return nil
}

// OpenStore opens the store c names (call after Validate): the FileStore of
// StateFile, or an EtcdStore (which connects on its first call).
func (c Config) OpenStore() (Store, error) {
	if c.Store != StoreEtcd {
		return NewFileStore(c.StateFile), nil
	}
	o := EtcdOptions{Endpoints: c.Etcd.Endpoints, Prefix: c.Etcd.Prefix, DialTimeout: c.Etcd.DialTimeout, LockTTL: c.Etcd.LockTTL}
	if t := c.Etcd.TLS; t.Cert != "" {
		tc, err := tlsconf.Client(t.Cert, t.Key, t.CA)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls: %w", err)
		}
		o.TLS = tc
	}
	return OpenEtcdStore(o)
}

// OutcomeRefused: the rollout touched no host (its preflight or pre hook
// failed); only in the history index.
const OutcomeRefused = "refused"

// NewRolloutRecord is the history record of a rollout that held the lock
// info and ended at ended with res and err (Run's or Resume's).
func NewRolloutRecord(info LockInfo, res Result, err error, ended time.Time) RolloutRecord {
	outcome := rolloutOutcome(res, err)
	if errors.Is(err, ErrPreflight) {
		outcome = OutcomeRefused
	}
	return RolloutRecord{
		RolloutID: info.RolloutID, Token: info.Token, Kind: info.Kind, Image: info.Image, Holder: info.Holder,
		Message: info.Message, Started: info.Since, Ended: ended, Outcome: outcome, Stopped: res.Stopped,
		Hosts: res.Totals.Hosts, Done: res.Totals.Done, Failed: res.Totals.Failed, RolledBack: res.RolledBack,
	}
}
