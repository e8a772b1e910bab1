package rollout

import "context"

// predialHeadStart is how many of the next batch's hosts are dialled at once
// when the current batch's last step starts, before any of its hosts has
// finished: the next batch never starts cold, even when every host of the
// current one finishes at the last moment. The rest follow the current
// batch's releases (see predial).
const predialHeadStart = 256

// pacer is a paced pre-dial under way: hosts dialled in order, one per
// credit. It is conns' current pacer until ended (conns.endPredial).
type pacer struct {
	hosts   []string
	credits chan struct{} // one buffered per host that may be dialled now
	ended   chan struct{} // closed by endPredial

	next int // index in hosts of the next host to dial; guarded by conns.mu
}

// predial dials hosts (the next batch's) in the background, at the pace the
// connections open now are closed: head of them at once, then one more each
// time a released connection has been closed, with at most workers dials at
// once. So the connections open stay at most those open when predial was
// called plus head, instead of two batches' worth. It returns at once and
// ends an earlier pre-dial.
//
// The pre-dial ends when every host is dialled, when ctx ends, or at
// endPredial (which prepare and closeAll call): the hosts not dialled by then
// are dialled by whoever needs them (prepare, get). As with prepare, a
// failed dial is the error of the call that needs the connection.
func (c *conns) predial(ctx context.Context, hosts []string, workers, head int) {
	c.endPredial()
	if len(hosts) == 0 {
		return
	}
	p := &pacer{hosts: hosts, credits: make(chan struct{}, len(hosts)), ended: make(chan struct{})}
	for range min(head, len(hosts)) {
		p.credits <- struct{}{}
	}
	c.mu.Lock()
	c.pacer = p
	c.mu.Unlock()
	for range min(workers, len(hosts)) {
		go func() {
			for {
				select {
				case <-p.credits:
				case <-p.ended:
					return
				case <-ctx.Done():
					return
				}
				h, e, ok := c.nextPaced(p)
				if !ok {
					return
				}
				c.establish(ctx, h, e)
			}
		}()
	}
}

// nextPaced takes p's next host nobody has dialled yet and makes its entry,
// which the caller must dial; ok is false when p has ended or has no host
// left. The entry is made under the lock endPredial takes, so that no
// connection is dialled after closeAll has listed them.
func (c *conns) nextPaced(p *pacer) (string, *conn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pacer != p {
		return "", nil, false
	}
	for ; p.next < len(p.hosts); p.next++ {
		h := p.hosts[p.next]
		if _, ok := c.m[h]; ok {
			continue // dialled already (a get of its batch, or a kept preflight connection)
		}
		e := &conn{ready: make(chan struct{})}
		c.m[h] = e
		p.next++
		return h, e, true
	}
	return "", nil, false
}

// closedOne grants the current pre-dial, if any, one more dial: a
// connection was closed.
func (c *conns) closedOne() {
	c.mu.Lock()
	p := c.pacer
	c.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case p.credits <- struct{}{}:
	default: // as many credits as hosts: every host may be dialled already
	}
}

// endPredial ends the pre-dial under way, if any: it dials no more host
// (a dial it started goes on until the connection is ready or failed).
func (c *conns) endPredial() {
	c.mu.Lock()
	p := c.pacer
	c.pacer = nil
	c.mu.Unlock()
	if p != nil {
		close(p.ended)
	}
}
