package rollout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// connector is an Agent whose transport can be established ahead of its
// first call (Client: gRPC's NewClient connects lazily). Connect returns
// once the connection is ready, or with an error wrapping ErrUnreachable
// when it failed, or when ctx ended first.
type connector interface {
	Connect(ctx context.Context) error
}

// conns are the agent connections a run holds open: a host's connection is
// dialled when its batch is about to need it and closed after its last slot.
// The next batch's hosts are dialled during the current batch's last step
// at the pace the current batch's connections are closed (predial), so at
// most about one batch's worth plus predialHeadStart are open at once, not
// two batches'.
//
// A dial that failed is remembered until the host is released: the call
// that needs the connection gets its error (the host is then failed as
// unreachable), and a later connect after the release dials again.
type conns struct {
	dial    Dial
	timeout time.Duration // ConnectTimeout: dial and handshake, per host
	log     *slog.Logger

	// closing: connections being closed. A close is not waited for by the
	// step that released the connection (gRPC's takes a while: ~0.1 ms of
	// CPU each, 3,500 at the end of a batch), only by closeAll.
	closing sync.WaitGroup
	// ended is cancelled by closeAll: the dials still under way (a pre-dial
	// of a batch that will not run) stop, rather than holding the end of
	// the run for up to the connect timeout.
	ended    context.Context
	endDials context.CancelFunc

	mu    sync.Mutex
	m     map[string]*conn
	open  int // connections dialled and not closed
	peak  int
	pacer *pacer // the pre-dial under way, if any
}

// conn is one host's connection, being dialled until ready is closed.
type conn struct {
	ready chan struct{}
	a     Agent
	err   error
}

func newConns(dial Dial, timeout time.Duration, log *slog.Logger) *conns {
	ended, end := context.WithCancel(context.Background())
	return &conns{dial: dial, timeout: timeout, log: log, m: map[string]*conn{}, ended: ended, endDials: end}
}

// get returns h's connection, dialling it if nobody has, and waiting for a
// dial under way. The error wraps ErrUnreachable, or is ctx's.
func (c *conns) get(ctx context.Context, h string) (Agent, error) {
	e, dial := c.entry(h, false)
	if dial {
		c.establish(ctx, h, e)
	}
	select {
	case <-e.ready:
		return e.a, e.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the connection: %w", ErrUnreachable, context.Cause(ctx))
	}
}

// entry returns h's entry, and whether the caller must dial it (it is new).
// With retryFailed, an entry whose dial failed is replaced by a new one.
func (c *conns) entry(h string, retryFailed bool) (*conn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[h]; ok {
		select {
		case <-e.ready:
			if e.err == nil || !retryFailed {
				return e, false
			}
		default:
			return e, false // being dialled
		}
	}
	e := &conn{ready: make(chan struct{})}
	c.m[h] = e
	return e, true
}

// establish dials h within the connect timeout and, when the agent can,
// establishes its transport (TLS handshake included) before returning.
func (c *conns) establish(ctx context.Context, h string, e *conn) {
	defer close(e.ready)
	dctx, cancel := within(ctx, c.timeout)
	defer cancel()
	defer context.AfterFunc(c.ended, cancel)()
	a, err := c.dialNow(dctx, h)
	if err != nil {
		e.err = asUnreachable(err)
		return
	}
	if cn, ok := a.(connector); ok {
		if err := cn.Connect(dctx); err != nil {
			c.closeAgent(a)
			e.err = asUnreachable(err)
			return
		}
	}
	e.a = a
}

// dialNow dials h within ctx and counts the connection open; the caller
// hands it to put or closes it with closeAgent.
func (c *conns) dialNow(ctx context.Context, h string) (Agent, error) {
	a, err := c.dial(ctx, h)
	if err != nil {
		return nil, err
	}
	c.opened()
	return a, nil
}

// put makes a, which dialNow returned for h, h's connection.
func (c *conns) put(h string, a Agent) {
	e := &conn{ready: make(chan struct{}), a: a}
	close(e.ready)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[h] = e
}

// prepare dials every host of hosts not yet dialled, in the background, with
// at most workers dials at once, and returns at once. The calls that need a
// connection wait for theirs (get); a failure is theirs to report. It ends
// the pre-dial under way (a batch starts: the hosts its pre-dial had not
// reached are dialled now), and dials again a host whose pre-dial failed:
// that was up to a step earlier, and a blip then is no reason to fail it.
func (c *conns) prepare(ctx context.Context, hosts []string, workers int) {
	c.endPredial()
	var toDial []string
	var entries []*conn
	for _, h := range hosts {
		if e, dial := c.entry(h, true); dial {
			toDial, entries = append(toDial, h), append(entries, e)
		}
	}
	if len(toDial) == 0 {
		return
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range toDial {
			next <- i
		}
	}()
	for range min(workers, len(toDial)) {
		go func() {
			for i := range next {
				c.establish(ctx, toDial[i], entries[i])
			}
		}()
	}
}

// release closes h's connection (once its dial is over), in the
// background, and forgets it: the host has had its last slot of the run, or
// failed. A later get dials again. Once closed, the connection makes room
// for one more dial of the pre-dial under way (predial).
func (c *conns) release(h string) {
	c.mu.Lock()
	e, ok := c.m[h]
	delete(c.m, h)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.closing.Go(func() {
		<-e.ready // a dial under way ends within the connect timeout
		if e.a != nil {
			c.closeAgent(e.a)
			c.closedOne()
		}
	})
}

// closeAll releases every connection and waits until all are closed: the
// end of the run.
func (c *conns) closeAll() {
	c.endPredial()
	c.endDials()
	c.mu.Lock()
	hosts := make([]string, 0, len(c.m))
	for h := range c.m {
		hosts = append(hosts, h)
	}
	c.mu.Unlock()
	for _, h := range hosts {
		c.release(h)
	}
	c.closing.Wait()
}

// counted: an agent dial returned is open until closeAgent.
func (c *conns) opened() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open++
	c.peak = max(c.peak, c.open)
}

func (c *conns) closeAgent(a Agent) {
	if cl, ok := a.(io.Closer); ok {
		if err := cl.Close(); err != nil {
			c.log.Debug("closing an agent connection", "error", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
}

// peakOpen is the most connections open at once so far.
func (c *conns) peakOpen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}
