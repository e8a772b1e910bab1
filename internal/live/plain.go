package live

import (
	"bufio"
	"io"
	"sync"
	"time"

	"github.com/haroll/haroll/rollout"
)

// flushEvery bounds how long a line waits in memory before it is written.
const flushEvery = 100 * time.Millisecond

// chunkSize is the events per chunk of the queue: the queue grows a chunk
// at a time, so an Event never copies what is already queued.
const chunkSize = 1024

// Plain writes a rollout's progress as rollout.Progress's lines, byte for
// byte, without ever making the rollout wait for w: Event only appends the
// event to an in-memory queue, which grows as long as w is slow and drops
// nothing; one goroutine formats the queue into a buffered writer and
// flushes it at least every 100 ms. Close writes what is left.
type Plain struct {
	mu     sync.Mutex
	queue  [][]item // chunks of chunkSize, the last one being filled
	free   [][]item // chunks written, for reuse
	closed bool

	stop chan struct{}
	done chan struct{}
	err  error // the first error writing to w; set by the drain
}

// item is one event, or one line written through Writer.
type item struct {
	e    rollout.Event
	text []byte
}

// NewPlain writes the progress of a rollout over hosts with slots to w,
// aligned as rollout.NewProgress aligns it, until Close.
func NewPlain(w io.Writer, hosts, slots []string) *Plain {
	p := &Plain{stop: make(chan struct{}), done: make(chan struct{})}
	bw := bufio.NewWriterSize(w, 64<<10)
	go p.drain(bw, rollout.NewProgress(bw, hosts, slots))
	return p
}

// Event queues e and returns at once; it is meant as
// rollout.Executor.Events. Events after Close are dropped.
func (p *Plain) Event(e rollout.Event) {
	p.mu.Lock()
	if !p.closed {
		p.push(item{e: e})
	}
	p.mu.Unlock()
}

// push appends it to the queue; p.mu is held.
func (p *Plain) push(it item) {
	n := len(p.queue)
	if n == 0 || len(p.queue[n-1]) == chunkSize {
		var c []item
		if f := len(p.free); f > 0 {
			c, p.free = p.free[f-1], p.free[:f-1]
		} else {
			c = make([]item, 0, chunkSize)
		}
		p.queue = append(p.queue, c)
		n++
	}
	p.queue[n-1] = append(p.queue[n-1], it)
}

// Writer returns a writer whose bytes are written to w in order with the
// events, through the same queue.
func (p *Plain) Writer() io.Writer { return plainWriter{p} }

type plainWriter struct{ p *Plain }

func (pw plainWriter) Write(b []byte) (int, error) {
	pw.p.mu.Lock()
	defer pw.p.mu.Unlock()
	if !pw.p.closed {
		pw.p.push(item{text: append([]byte(nil), b...)})
	}
	return len(b), nil
}

// Close writes every queued line, flushes, and returns the first error
// writing to w, if any. It may be called more than once.
func (p *Plain) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	p.mu.Unlock()
	<-p.done
	return p.err
}

// drain writes the queue every flushEvery, swapping it for an empty one
// under the lock so that Event never waits for a write.
func (p *Plain) drain(bw *bufio.Writer, progress *rollout.Progress) {
	defer close(p.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	var spare [][]item
	for {
		var last bool
		select {
		case <-tick.C:
		case <-p.stop:
			last = true
		}
		p.mu.Lock()
		chunks := p.queue
		p.queue = spare[:0]
		p.mu.Unlock()
		for _, c := range chunks {
			for _, it := range c {
				if it.text != nil {
					bw.Write(it.text) //nolint:errcheck // the writer keeps its first error for Flush
					continue
				}
				progress.Event(it.e)
			}
		}
		if err := bw.Flush(); err != nil && p.err == nil {
			p.err = err
		}
		p.mu.Lock()
		for _, c := range chunks {
			clear(c) // let the strings go
			if len(p.free) < 64 {
				p.free = append(p.free, c[:0])
			}
		}
		p.mu.Unlock()
		clear(chunks)
		spare = chunks
		if last {
			return
		}
	}
}
