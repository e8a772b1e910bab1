package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/haroll/haroll/rollout"
)

// lockReleaseTimeout bounds giving the fleet lock back when a command ends
// (its context may be cancelled by then: ^C).
const lockReleaseTimeout = 10 * time.Second

// addLockFlags adds the flags of a command that takes the fleet lock.
func addLockFlags(f *pflag.FlagSet) {
	f.Duration("lock-wait", 0, "wait this long for another rollout's fleet lock to be released (0: refuse at once)")
	f.String("message", "", "why this rollout: shown by `haroll rollout lock status` and kept in the history")
}

// openStore opens the store cfg names; the caller closes it.
func openStore(cfg rollout.Config) (rollout.Store, error) {
	s, err := cfg.OpenStore()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return s, nil
}

// newRolloutID names a rollout: its UTC start and 4 random hex digits.
func newRolloutID() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// acquireFleetLock takes the fleet lock in store for a rollout of info.Kind
// (and info.Image), waiting as --lock-wait says: RolloutID, Holder and
// Message are filled in here when empty. A lock held by another is the
// *rollout.LockedError, which names the holder. Release the lease with
// releaseFleetLock when the command ends, whatever happened.
func acquireFleetLock(cmd *cobra.Command, store rollout.Store, info rollout.LockInfo) (rollout.Lease, error) {
	wait, _ := cmd.Flags().GetDuration("lock-wait")
	if wait < 0 {
		return nil, usageError("--lock-wait %s: want 0 (refuse at once) or a positive duration", wait)
	}
	if info.RolloutID == "" {
		info.RolloutID = newRolloutID()
	}
	if info.Holder == "" {
		info.Holder = holder()
	}
	if info.Message == "" {
		info.Message, _ = cmd.Flags().GetString("message")
	}
	if wait > 0 {
		if st, err := store.Status(cmd.Context()); err == nil && st != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "waiting up to %s for the fleet lock: %s\n", wait, st)
		}
	}
	lease, err := store.Acquire(cmd.Context(), info, wait)
	if err != nil {
		return nil, err
	}
	slog.Info("fleet lock taken", "rollout_id", lease.Info().RolloutID, "token", lease.Info().Token, "store", store.String())
	return lease, nil
}

// releaseFleetLock gives the lease back, even once the command's context
// is done; a failure is logged (the lock lapses, or `lock release` frees it).
func releaseFleetLock(lease rollout.Lease) { releaseFleetLockWithin(lease, lockReleaseTimeout) }

// storeTroubleTimeout bounds the history record and the lock's release of a
// rollout that the store failed (its state not written, its lock lost: etcd
// may be out of reach): they are tried, not waited for (the lock lapses
// within lock_ttl anyway).
const storeTroubleTimeout = 2 * time.Second

// storeTrouble says whether err (the rollout's) says the store failed it.
func storeTrouble(err error) bool {
	return errors.Is(err, rollout.ErrState) || errors.Is(err, rollout.ErrLockLost)
}

// releaseFleetLockAfter releases lease once a rollout ended with *runErr:
// at once when that says the store failed it (see storeTroubleTimeout).
func releaseFleetLockAfter(lease rollout.Lease, runErr *error) {
	if storeTrouble(*runErr) {
		releaseFleetLockWithin(lease, storeTroubleTimeout)
		return
	}
	releaseFleetLock(lease)
}

func releaseFleetLockWithin(lease rollout.Lease, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := lease.Release(ctx); err != nil {
		slog.Warn("the fleet lock was not released", "rollout_id", lease.Info().RolloutID, "error", err)
	}
}

// recordRollout adds the rollout that held lease to store's history index;
// a failure is logged, not the command's.
func recordRollout(store rollout.Store, lease rollout.Lease, res rollout.Result, err error) {
	d := lockReleaseTimeout
	if storeTrouble(err) {
		d = storeTroubleTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	rec := rollout.NewRolloutRecord(lease.Info(), res, err, time.Now())
	if err := store.RecordRollout(ctx, rec); err != nil {
		slog.Warn("the rollout is not in the history", "rollout_id", rec.RolloutID, "error", err)
	}
}

// holder is user@hostname.
func holder() string {
	h, err := os.Hostname()
	if err != nil {
		h = "unknown-host"
	}
	return whoami() + "@" + h
}

// newLock is `haroll rollout lock`: the fleet lock's status, and releasing
// it for a holder that is gone.
func newLock() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "See or release the fleet lock (one rollout at a time)",
		Long: `Every rollout takes the fleet lock in the store (store: file, beside
state_file; store: etcd, in etcd) before it asks any agent anything, and holds
it until it ends. A second rollout is refused while it is held (or waits,
with --lock-wait).`,
	}
	var output string
	var keepClaims bool
	status := &cobra.Command{
		Use:   "status [--config coordinator.yaml] [-o json]",
		Short: "Who holds the fleet lock, since when, for which rollout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError("--output %q: want text or json", output)
			}
			store, err := storeOf(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			info, err := store.Status(cmd.Context())
			if err != nil {
				return err
			}
			return writeLockStatus(cmd.OutOrStdout(), output, store, info)
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	release := &cobra.Command{
		Use:   "release [--config coordinator.yaml]",
		Short: "Free the fleet lock whoever holds it: for a holder that is gone",
		Long: `release frees the fleet lock at once. A coordinator that still runs finds
its lock lost before its next step and stops there; use it for a holder that
is gone (a crashed machine, with store: etcd before lock_ttl passes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadCoordinatorConfig(cmd)
			if err != nil {
				return err
			}
			store, err := openStore(cfg)
			if err != nil {
				return err
			}
			defer store.Close()
			who, err := store.ForceRelease(cmd.Context())
			if err != nil {
				return err
			}
			if who == nil {
				// No holder: the claims agents still hold are of a rollout
				// whose lock lapsed; whose token is unknown here, they are
				// left to lapse (claim_ttl), or to `redeploy --break-claim`.
				fmt.Fprintf(cmd.OutOrStdout(), "the fleet lock was free (%s); agents' claims, if any, lapse claim_ttl after their rollout's last request\n", store)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "released the fleet lock of %s (token %d)\n", who, who.Token)
			if keepClaims {
				return nil
			}
			return releaseAgentClaims(cmd, cfg, who.Token)
		},
	}
	release.Flags().BoolVar(&keepClaims, "keep-claims", false, "release the lock only: leave the agents' claims (a person's `haroll redeploy` is refused on a claimed host until claim_ttl passes)")
	for _, c := range []*cobra.Command{status, release} {
		c.Flags().String("config", defaultCoordinatorConfig, "coordinator configuration file (YAML): its store names the lock")
		c.Flags().Bool("insecure", false, "as for rollout: lets a --config without TLS files load")
	}
	cmd.AddCommand(status, release)
	return cmd
}

// storeOf opens the store of the --config.
func storeOf(cmd *cobra.Command) (rollout.Store, error) {
	cfg, err := loadCoordinatorConfig(cmd)
	if err != nil {
		return nil, err
	}
	return openStore(cfg)
}

// lockStatus is `lock status -o json`.
type lockStatus struct {
	Held  bool              `json:"held"`
	Store string            `json:"store"`
	Lock  *rollout.LockInfo `json:"lock,omitempty"`
}

func writeLockStatus(w io.Writer, output string, store rollout.Store, info *rollout.LockInfo) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(lockStatus{Held: info != nil, Store: store.String(), Lock: info})
	}
	if info == nil {
		fmt.Fprintf(w, "the fleet lock is free (%s)\n", store)
		return nil
	}
	fmt.Fprintf(w, "held by     %s\n", info.Holder)
	fmt.Fprintf(w, "rollout     %s (%s)\n", info.RolloutID, info.Kind)
	if info.Image != "" {
		fmt.Fprintf(w, "image       %s\n", info.Image)
	}
	if info.Message != "" {
		fmt.Fprintf(w, "message     %s\n", info.Message)
	}
	fmt.Fprintf(w, "since       %s (%s ago)\n", info.Since.Format(time.RFC3339), time.Since(info.Since).Round(time.Second))
	fmt.Fprintf(w, "token       %d\n", info.Token)
	if !info.Expires.IsZero() {
		fmt.Fprintf(w, "expires     %s unless its holder renews it\n", info.Expires.Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "expires     when its holder's process ends\n")
	}
	fmt.Fprintf(w, "store       %s\n", info.Store)
	return nil
}

// releaseAgentClaims ends the claims of every agent of cfg, so that a
// person's `haroll redeploy` on a host of the released rollout is not
// refused until claim_ttl passes. Hosts that do not answer are named on
// stderr; the lock is released all the same (a machine that reaches etcd
// may not reach the agents), and their claims lapse on their own.
func releaseAgentClaims(cmd *cobra.Command, cfg rollout.Config, token uint64) error {
	hosts, err := cfg.ReadHosts()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dial, err := dialer(cfg, hosts)
	if err != nil {
		return err
	}
	n, newer, errs := rollout.ReleaseClaims(cmd.Context(), dial, hosts, token, cfg.ConnectTimeout)
	fmt.Fprintf(cmd.OutOrStdout(), "ended the claims of token %d or older on %d of %d host(s)", token, n-newer, len(hosts))
	if newer > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "; %d host(s) belong to a newer rollout and keep its claim", newer)
	}
	fmt.Fprintln(cmd.OutOrStdout())
	if len(errs) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %d host(s) did not answer; their claims lapse claim_ttl after the rollout's last request (or run this again from where they can be reached):\n%v\n",
			len(errs), errors.Join(errs...))
	}
	return nil
}
