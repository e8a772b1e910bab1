package rollout

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// EtcdStore keeps a fleet's rollouts in etcd, every key under a prefix, so
// that any machine with the configuration can resume a rollout, decide for
// its canary, or see and release the fleet lock:
//
//	<prefix>/lock/<lease>          the fleet lock: a concurrency.Mutex whose
//	                               session's lease (lock_ttl) its holder
//	                               renews; a crashed holder's lock lapses
//	<prefix>/lock-info             the holder's LockInfo, under that lease
//	<prefix>/token                 the last token handed out
//	<prefix>/state/current         {"generation":G,"chunks":N}
//	<prefix>/state/gen/<G>/snap/<i> the snapshot of generation G (State
//	                               JSON) in N chunks
//	<prefix>/state/gen/<G>/log/<n> the log records of one group commit
//	                               (encodeRecord lines)
//	<prefix>/decision              a canary decision
//	<prefix>/decision-lock/<lease> the decision lock (lockDecisions)
//	<prefix>/history/<token>       the history index, a RolloutRecord each
//
// Every write of the state is a transaction guarded by the fleet lock
// (the mutex key's create revision): a coordinator that lost the lock
// cannot write. A generation is written in transactions of at most
// etcdTxnBytes (etcd refuses requests above 1.5 MiB by default), then made
// current in one more that deletes the older generations with a range
// delete; a reader reads current, then that generation at the same
// revision, so it never sees half of one.
type EtcdStore struct {
	cli    *clientv3.Client
	cfg    EtcdOptions
	prefix string
}

// EtcdOptions is how to reach etcd and hold the fleet lock there.
type EtcdOptions struct {
	Endpoints []string
	// Prefix is put before every key ("/haroll/prod"), without a
	// trailing slash.
	Prefix string
	// TLS, if set, is the client's mutual TLS; nil dials in plaintext.
	TLS         *tls.Config
	DialTimeout time.Duration
	// LockTTL is the lock's lease, in whole seconds: a holder that stopped
	// renewing it (crashed, cut off) loses the lock after it.
	LockTTL time.Duration
}

// Sizes of etcd writes: a chunk of a snapshot or log under etcdChunk, a
// transaction's puts under etcdTxnBytes and etcdTxnOps (etcd's defaults:
// 1.5 MiB a request, 128 operations a transaction).
const (
	etcdChunk    = 512 << 10
	etcdTxnBytes = 1 << 20
	etcdTxnOps   = 64
)

// etcdCheckTimeout bounds a lease's Check: a coordinator that cannot prove
// within it that it holds the lock does not start a step.
const etcdCheckTimeout = 3 * time.Second

// decisionSessionTTL is the lease of the decision lock of a `haroll rollout
// promote` or `abort`: a crashed one's hold lapses after it.
const decisionSessionTTL = 10

// OpenEtcdStore connects to etcd (lazily: an unreachable etcd fails the
// first call, within DialTimeout).
func OpenEtcdStore(o EtcdOptions) (*EtcdStore, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultEtcdPrefix
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.LockTTL < time.Second {
		o.LockTTL = DefaultLockTTL
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: o.Endpoints, TLS: o.TLS, DialTimeout: o.DialTimeout,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	return &EtcdStore{cli: cli, cfg: o, prefix: strings.TrimSuffix(o.Prefix, "/")}, nil
}

// Defaults of the etcd store.
const (
	DefaultEtcdPrefix = "/haroll"
	DefaultLockTTL    = 15 * time.Second
)

func (s *EtcdStore) String() string {
	return fmt.Sprintf("etcd %s prefix %s", strings.Join(s.cfg.Endpoints, ","), s.prefix)
}

// Close closes the connection to etcd; a lease still held lapses after
// LockTTL.
func (s *EtcdStore) Close() error { return s.cli.Close() }

func (s *EtcdStore) key(parts ...string) string { return s.prefix + "/" + strings.Join(parts, "/") }

func (s *EtcdStore) lockKey() string { return s.key("lock") }

func (s *EtcdStore) genKey(gen uint64) string {
	return s.key("state", "gen", fmt.Sprintf("%020d", gen)) + "/"
}

// unreachable wraps an etcd call's error with what to check.
func (s *EtcdStore) unreachable(what string, err error) error {
	return fmt.Errorf("%s in %s: %w (is etcd up and reachable, and its certificate trusted?)", what, s, err)
}

// grant starts a session whose lease lasts ttl seconds; the grant is bounded
// by ctx and the dial timeout, the session lives until closed.
func (s *EtcdStore) grant(ctx context.Context, ttl int) (*concurrency.Session, error) {
	gctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	g, err := s.cli.Grant(gctx, int64(ttl))
	if err != nil {
		return nil, s.unreachable("granting a lease", err)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(g.ID), concurrency.WithTTL(ttl),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, s.unreachable("keeping a lease alive", err)
	}
	return sess, nil
}

// revoke ends sess and its lease, bounded by the dial timeout.
func (s *EtcdStore) revoke(sess *concurrency.Session) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
	defer cancel()
	sess.Orphan()
	if _, err := s.cli.Revoke(ctx, sess.Lease()); err != nil {
		return s.unreachable("revoking a lease", err)
	}
	return nil
}

// Acquire takes the fleet lock (see Locker): TryLock without wait, else
// Lock for up to wait.
func (s *EtcdStore) Acquire(ctx context.Context, info LockInfo, wait time.Duration) (Lease, error) {
	ttl := max(1, int(s.cfg.LockTTL/time.Second))
	sess, err := s.grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(sess, s.lockKey())
	waited := false
	if wait <= 0 {
		tctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		err = m.TryLock(tctx)
		cancel()
	} else {
		wctx, cancel := context.WithTimeout(ctx, wait)
		err = m.Lock(wctx)
		waited = wctx.Err() != nil
		cancel()
	}
	if err != nil {
		_ = s.revoke(sess)
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("waiting for the fleet lock in %s: %w", s, context.Cause(ctx))
		case errors.Is(err, concurrency.ErrLocked) || waited:
			return nil, s.lockedError(ctx)
		}
		return nil, s.unreachable("taking the fleet lock", err)
	}
	l := &etcdLease{s: s, sess: sess, m: m}
	fail := func(err error) (Lease, error) {
		_ = l.Release(ctx)
		return nil, err
	}
	token, err := s.nextToken(ctx)
	if err != nil {
		return fail(err)
	}
	now := time.Now()
	info.Token, info.Since, info.Store, info.Expires = token, now, s.String()+" key "+s.lockKey(), now.Add(time.Duration(ttl)*time.Second)
	b, err := json.Marshal(info)
	if err != nil {
		return fail(err)
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	resp, err := s.cli.Txn(pctx).If(m.IsOwner()).Then(clientv3.OpPut(s.key("lock-info"), string(b), clientv3.WithLease(sess.Lease()))).Commit()
	if err != nil {
		return fail(s.unreachable("writing the fleet lock's holder", err))
	}
	if !resp.Succeeded {
		return fail(fmt.Errorf("%w: released while it was being taken", ErrLockLost))
	}
	l.info = info
	return l, nil
}

// nextToken is max(now in ns, last token + 1), stored before it is handed
// out; a transaction on the token key keeps two acquisitions from sharing
// one. Tokens of the file store are clock readings too: a fleet moved from
// one store to the other keeps rising tokens (clocks in step).
func (s *EtcdStore) nextToken(ctx context.Context) (uint64, error) {
	key := s.key("token")
	for {
		tctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		resp, err := s.cli.Get(tctx, key)
		if err != nil {
			cancel()
			return 0, s.unreachable("reading the token", err)
		}
		var last uint64
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if last, err = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64); err != nil {
				cancel()
				return 0, fmt.Errorf("token %s in %s: %q is not a number: delete it (the next token is then the clock's)", key, s, resp.Kvs[0].Value)
			}
		}
		token := max(uint64(time.Now().UnixNano()), last+1)
		t, err := s.cli.Txn(tctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, strconv.FormatUint(token, 10))).Commit()
		cancel()
		if err != nil {
			return 0, s.unreachable("writing the token", err)
		}
		if t.Succeeded {
			return token, nil
		}
	}
}

func (s *EtcdStore) lockedError(ctx context.Context) error {
	info, err := holderOf(ctx, s.Status)
	if err != nil {
		return err
	}
	if info == nil {
		info = &LockInfo{RolloutID: "(unknown)", Holder: "(a holder that just let go)", Store: s.String() + " key " + s.lockKey()}
	}
	return &LockedError{Holder: *info}
}

// Status is the lock's holder (the oldest mutex key's), with when its lease
// expires unless renewed; nil when the lock is free.
func (s *EtcdStore) Status(ctx context.Context) (*LockInfo, error) {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	resp, err := s.cli.Txn(tctx).Then(clientv3.OpGet(s.lockKey()+"/", clientv3.WithFirstCreate()...), clientv3.OpGet(s.key("lock-info"))).Commit()
	if err != nil {
		return nil, s.unreachable("reading the fleet lock", err)
	}
	owner := resp.Responses[0].GetResponseRange().GetKvs()
	if len(owner) == 0 {
		return nil, nil
	}
	info := &LockInfo{RolloutID: "(starting)", Holder: "(unknown)"}
	if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 && kvs[0].Lease == owner[0].Lease {
		if err := json.Unmarshal(kvs[0].Value, info); err != nil {
			return nil, fmt.Errorf("fleet lock holder in %s is unreadable (%v): haroll rollout lock release", s, err)
		}
	}
	info.Store = s.String() + " key " + s.lockKey()
	if ttl, err := s.cli.TimeToLive(tctx, clientv3.LeaseID(owner[0].Lease)); err == nil && ttl.TTL > 0 {
		info.Expires = time.Now().Add(time.Duration(ttl.TTL) * time.Second)
	}
	return info, nil
}

// ForceRelease deletes the holder's mutex key and info: the next waiter
// gets the lock, and the holder's Check (and writes) fail.
func (s *EtcdStore) ForceRelease(ctx context.Context) (*LockInfo, error) {
	info, err := s.Status(ctx)
	if err != nil || info == nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	resp, err := s.cli.Get(tctx, s.lockKey()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, s.unreachable("reading the fleet lock", err)
	}
	if len(resp.Kvs) == 0 {
		return info, nil // let go meanwhile
	}
	kv := resp.Kvs[0]
	_, err = s.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(string(kv.Key)), "=", kv.CreateRevision)).
		Then(clientv3.OpDelete(string(kv.Key)), clientv3.OpDelete(s.key("lock-info"))).Commit()
	if err != nil {
		return nil, s.unreachable("releasing the fleet lock", err)
	}
	return info, nil
}

// etcdLease is a held etcd lock: its session (the lease kept alive) and its
// mutex.
type etcdLease struct {
	s    *EtcdStore
	sess *concurrency.Session
	m    *concurrency.Mutex
	info LockInfo

	once sync.Once
	err  error
}

func (l *etcdLease) Info() LockInfo { return l.info }

// Check proves the lock is held: the session's lease is alive and a
// linearizable read finds the mutex key as it was taken, within
// etcdCheckTimeout. etcd unreachable is the lock lost: a coordinator that
// cannot prove it holds the lock does not start a step.
func (l *etcdLease) Check(ctx context.Context) error {
	select {
	case <-l.sess.Done():
		return fmt.Errorf("%w: its etcd lease (%s) lapsed or was released", ErrLockLost, l.s.cfg.LockTTL)
	default:
	}
	cctx, cancel := context.WithTimeout(ctx, etcdCheckTimeout)
	defer cancel()
	resp, err := l.s.cli.Txn(cctx).If(l.m.IsOwner()).Commit()
	if err != nil {
		return fmt.Errorf("%w: cannot tell whether it is still held: %w", ErrLockLost, l.s.unreachable("checking the fleet lock", err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s no longer holds %s (released with `haroll rollout lock release`, or its lease lapsed)", ErrLockLost, l.info.RolloutID, l.s.lockKey())
	}
	return nil
}

// Release deletes the mutex key and the info (if still this lease's) and
// revokes the lease.
func (l *etcdLease) Release(ctx context.Context) error {
	l.once.Do(func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.s.cfg.DialTimeout)
		defer cancel()
		_, err := l.s.cli.Txn(rctx).If(l.m.IsOwner()).Then(clientv3.OpDelete(l.m.Key()), clientv3.OpDelete(l.s.key("lock-info"))).Commit()
		if rerr := l.s.revoke(l.sess); err == nil {
			err = rerr
		}
		if err != nil {
			l.err = fmt.Errorf("releasing the fleet lock (it lapses within %s anyway): %w", l.s.cfg.LockTTL, err)
		}
	})
	return l.err
}

// owner is the guard of a write under the lock.
func (l *etcdLease) owner() clientv3.Cmp { return l.m.IsOwner() }

func (s *EtcdStore) stateBackend(lease Lease) stateBackend {
	b := &etcdBackend{s: s}
	if l, ok := lease.(*etcdLease); ok && l.s == s {
		b.lease = l
	}
	return b
}

// etcdCurrent is <prefix>/state/current: the generation readers read.
type etcdCurrent struct {
	Generation uint64 `json:"generation"`
	Chunks     int    `json:"chunks"`
}

// ReadState reads the current generation: its snapshot, then its log.
func (s *EtcdStore) ReadState(ctx context.Context) (*State, error) {
	tctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	resp, err := s.cli.Get(tctx, s.key("state", "current"))
	if err != nil {
		return nil, s.unreachable("reading the rollout state", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("rollout state in %s: %w", s, fs.ErrNotExist)
	}
	var cur etcdCurrent
	if err := json.Unmarshal(resp.Kvs[0].Value, &cur); err != nil {
		return nil, fmt.Errorf("rollout state in %s: %s is unreadable (%v): delete %s to start over", s, s.key("state", "current"), err, s.key("state"))
	}
	gen := s.genKey(cur.Generation)
	all, err := s.cli.Get(tctx, gen, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision))
	if err != nil {
		return nil, s.unreachable("reading the rollout state", err)
	}
	var snap bytes.Buffer
	var chunks int
	var logs [][]byte
	for _, kv := range all.Kvs {
		switch k := string(kv.Key[len(gen):]); {
		case strings.HasPrefix(k, "snap/"):
			snap.Write(kv.Value)
			chunks++
		case strings.HasPrefix(k, "log/"):
			logs = append(logs, kv.Value)
		}
	}
	where := fmt.Sprintf("rollout state in %s, generation %d", s, cur.Generation)
	if chunks != cur.Chunks {
		return nil, fmt.Errorf("%s: %d snapshot chunks, want %d: delete %s to start over", where, chunks, cur.Chunks, s.key("state"))
	}
	st, err := parseSnapshot(snap.Bytes(), where)
	if err != nil {
		return nil, err
	}
	d := newDoneIndex(st)
	for i, l := range logs {
		for line := range bytes.Lines(l) {
			rec, err := decodeRecord(bytes.TrimSuffix(line, []byte{'\n'}))
			if err != nil {
				return nil, fmt.Errorf("%s: log record %d is corrupt (%v): delete %s to start over", where, i, err, s.key("state"))
			}
			d.apply(st, rec)
		}
	}
	return st, nil
}

// etcdBackend writes a rollout's state into etcd under the fleet lock
// (lease); without it every write is refused.
type etcdBackend struct {
	s     *EtcdStore
	lease *etcdLease
}

func (b *etcdBackend) String() string { return "rollout state in " + b.s.String() }

// txn commits ops guarded by the lock.
func (b *etcdBackend) txn(ops []clientv3.Op) error {
	if b.lease == nil {
		return fmt.Errorf("%s: written only under the fleet lock held in it (Executor.Lease)", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	resp, err := b.s.cli.Txn(ctx).If(b.lease.owner()).Then(ops...).Commit()
	if err != nil {
		return b.s.unreachable("writing the rollout state", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w: another coordinator may write it now", b, ErrLockLost)
	}
	return nil
}

// puts puts the keys' values in transactions of at most etcdTxnBytes and
// etcdTxnOps.
func (b *etcdBackend) puts(keys, values []string) error {
	var ops []clientv3.Op
	size := 0
	for i := range keys {
		if len(ops) > 0 && (size+len(values[i]) > etcdTxnBytes || len(ops) >= etcdTxnOps) {
			if err := b.txn(ops); err != nil {
				return err
			}
			ops, size = nil, 0
		}
		ops = append(ops, clientv3.OpPut(keys[i], values[i]))
		size += len(keys[i]) + len(values[i])
	}
	if len(ops) == 0 {
		return nil
	}
	return b.txn(ops)
}

func (b *etcdBackend) generation(s *State, prev uint64) (stateLog, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	var cur etcdCurrent
	resp, err := b.s.cli.Get(ctx, b.s.key("state", "current"))
	if err != nil {
		return nil, b.s.unreachable("reading the rollout state", err)
	}
	if len(resp.Kvs) > 0 {
		_ = json.Unmarshal(resp.Kvs[0].Value, &cur) // unreadable: generation 0, overwritten
	}
	gen := max(prev, s.Generation, cur.Generation) + 1
	snap := *s
	snap.Version, snap.Generation = stateVersion, gen
	j, err := json.Marshal(&snap)
	if err != nil {
		return nil, err
	}
	// The generation's keys, then the switch to it. An earlier write of
	// the same generation cut short left keys that go first.
	root := b.s.genKey(gen)
	var keys, values []string
	for i := 0; len(j) > 0 || i == 0; i++ {
		n := min(len(j), etcdChunk)
		keys, values = append(keys, fmt.Sprintf("%ssnap/%06d", root, i)), append(values, string(j[:n]))
		j = j[n:]
	}
	if err := b.txn([]clientv3.Op{clientv3.OpDelete(root, clientv3.WithPrefix())}); err != nil {
		return nil, err
	}
	if err := b.puts(keys, values); err != nil {
		return nil, err
	}
	c, _ := json.Marshal(etcdCurrent{Generation: gen, Chunks: len(keys)})
	older := b.s.key("state", "gen") + "/"
	if err := b.txn([]clientv3.Op{clientv3.OpPut(b.s.key("state", "current"), string(c)),
		clientv3.OpDelete(older, clientv3.WithRange(root))}); err != nil {
		return nil, err
	}
	s.Version, s.Generation = stateVersion, gen
	return &etcdLog{b: b, gen: gen, snapshot: len(s.Done)}, nil
}

// etcdLog is the log of one generation in etcd.
type etcdLog struct {
	b        *etcdBackend
	gen      uint64
	seq      uint64 // keys written
	records  int
	snapshot int
}

// append writes lines as one key (or several, each of whole records, when
// they pass etcdChunk) in one transaction (or several, bounded as puts).
func (l *etcdLog) append(lines []byte, n int) error {
	var keys, values []string
	for len(lines) > 0 {
		cut := len(lines)
		if cut > etcdChunk {
			if i := bytes.LastIndexByte(lines[:etcdChunk], '\n'); i >= 0 {
				cut = i + 1
			} else if i := bytes.IndexByte(lines, '\n'); i >= 0 {
				cut = i + 1
			}
		}
		keys = append(keys, fmt.Sprintf("%slog/%020d", l.b.s.genKey(l.gen), l.seq))
		values = append(values, string(lines[:cut]))
		lines = lines[cut:]
		l.seq++
	}
	if err := l.b.puts(keys, values); err != nil {
		return err
	}
	l.records += n
	return nil
}

func (l *etcdLog) due() bool          { return l.records >= max(minCompaction, l.snapshot) }
func (l *etcdLog) generation() uint64 { return l.gen }
func (l *etcdLog) close() error       { return nil }

func (s *EtcdStore) decisions(lease Lease) decisionStore {
	d := &etcdDecisions{s: s}
	if l, ok := lease.(*etcdLease); ok && l.s == s {
		d.sess = l.sess
	}
	return d
}

// etcdDecisions are the decisions in etcd; the decision lock is a mutex on
// the coordinator's own session, or a short one's (promote, abort). A
// decision is written in a transaction guarded by that lock: DecideIn's
// check and write are one step, or the write is refused.
type etcdDecisions struct {
	s    *EtcdStore
	sess *concurrency.Session

	mu   sync.Mutex
	held *concurrency.Mutex // the decision lock, while held
}

func (d *etcdDecisions) String() string { return "decision in " + d.s.String() }

func (d *etcdDecisions) lock(ctx context.Context) (func(), error) {
	sess, own := d.sess, false
	if sess == nil {
		var err error
		if sess, err = d.s.grant(ctx, decisionSessionTTL); err != nil {
			return nil, err
		}
		own = true
	}
	m := concurrency.NewMutex(sess, d.s.key("decision-lock"))
	lctx, cancel := context.WithTimeout(ctx, decisionLockWait)
	defer cancel()
	if err := m.Lock(lctx); err != nil {
		if own {
			_ = d.s.revoke(sess)
		}
		return nil, fmt.Errorf("decision lock %s: %w (held for more than %s: look for a stuck `haroll rollout promote` or `abort`)", d.s.key("decision-lock"), err, decisionLockWait)
	}
	d.mu.Lock()
	d.held = m
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		d.held = nil
		d.mu.Unlock()
		uctx, cancel := context.WithTimeout(context.Background(), d.s.cfg.DialTimeout)
		defer cancel()
		_ = m.Unlock(uctx)
		if own {
			_ = d.s.revoke(sess)
		}
	}, nil
}

func (d *etcdDecisions) peek(ctx context.Context) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	resp, err := d.s.cli.Get(ctx, d.s.key("decision"))
	if err != nil {
		return Decision{}, d.s.unreachable("reading the canary decision", err)
	}
	if len(resp.Kvs) == 0 {
		return Decision{}, nil
	}
	var dec Decision
	if err := json.Unmarshal(resp.Kvs[0].Value, &dec); err != nil {
		return Decision{}, fmt.Errorf("decision %s is unreadable (%v): run `haroll rollout promote` or `abort` again", d.s.key("decision"), err)
	}
	return dec, nil
}

func (d *etcdDecisions) write(ctx context.Context, dec Decision) error {
	b, err := json.Marshal(dec)
	if err != nil {
		return err
	}
	d.mu.Lock()
	m := d.held
	d.mu.Unlock()
	if m == nil {
		return fmt.Errorf("%s: written only under the decision lock", d)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	resp, err := d.s.cli.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(d.s.key("decision"), string(b))).Commit()
	if err != nil {
		return d.s.unreachable("writing the canary decision", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: the decision lock lapsed before the decision was written: run the command again", d)
	}
	return nil
}

func (d *etcdDecisions) drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if _, err := d.s.cli.Delete(ctx, d.s.key("decision")); err != nil {
		return d.s.unreachable("removing the canary decision", err)
	}
	return nil
}

// RecordRollout puts rec under <prefix>/history/<its token>.
func (s *EtcdStore) RecordRollout(ctx context.Context, rec RolloutRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if _, err := s.cli.Put(tctx, s.key("history", fmt.Sprintf("%020d", rec.Token)), string(b)); err != nil {
		return s.unreachable("recording the rollout in the history", err)
	}
	return nil
}

// Rollouts reads the history index, newest first (the keys' tokens, in
// descending order).
func (s *EtcdStore) Rollouts(ctx context.Context, limit int) ([]RolloutRecord, error) {
	tctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.cli.Get(tctx, s.key("history")+"/", opts...)
	if err != nil {
		return nil, s.unreachable("reading the history", err)
	}
	recs := make([]RolloutRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec RolloutRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("history %s in %s is unreadable (%v): delete it", kv.Key, s, err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}
