package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/haroll/haroll/internal/atomicfile"
)

// leftoversFile lists the old containers of finished slots that are still
// to be stopped and removed. It is written before a slot's journal entry is
// cleared, so a crash never loses one: recovery removes what it names.
const leftoversFile = "leftovers.json"

// Leftover is the old container of a finished slot.
type Leftover struct {
	Slot string `json:"slot"`
	ID   string `json:"id"`
}

// cleaner stops and removes the old containers of finished slots in the
// background, one at a time, while the next slot is being replaced: a
// graceful stop of a container that no longer gets traffic need not hold up
// the rollout. close waits for all of them.
type cleaner struct {
	a      *Agent
	events func(Event)
	queue  chan Leftover
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex // the leftovers file
}

func (a *Agent) startCleaner(events func(Event)) *cleaner {
	c := &cleaner{a: a, events: events, queue: make(chan Leftover, len(a.cfg.Slots)), done: make(chan struct{})}
	go c.run()
	return c
}

// add records l, then queues it.
func (c *cleaner) add(l Leftover) error {
	if err := c.update(func(ls []Leftover) []Leftover { return append(ls, l) }); err != nil {
		return err
	}
	c.queue <- l
	return nil
}

// close waits until every queued container is gone (or failed to go).
func (c *cleaner) close() {
	c.once.Do(func() { close(c.queue) })
	<-c.done
}

func (c *cleaner) run() {
	defer close(c.done)
	for l := range c.queue {
		start := time.Now()
		err := c.a.removeLeftover(l)
		ev := Event{Slot: l.Slot, Phase: PhaseCleanup, Start: start, Duration: time.Since(start), Detail: shortID(l.ID)}
		if err != nil {
			ev.Err = err.Error()
			c.a.log.Error("removing the old container failed: the next recovery tries again", "slot", l.Slot, "container", shortID(l.ID), "error", err)
		} else if err = c.update(func(ls []Leftover) []Leftover {
			return slices.DeleteFunc(ls, func(x Leftover) bool { return x == l })
		}); err != nil {
			c.a.log.Error("updating the leftovers file", "error", err)
		}
		c.events(ev)
	}
}

// keepLeftover records l in the leftovers file for the next recovery,
// through c when a redeploy's cleaner shares the file.
func (a *Agent) keepLeftover(c *cleaner, l Leftover) error {
	add := func(ls []Leftover) []Leftover {
		if slices.Contains(ls, l) {
			return ls
		}
		return append(ls, l)
	}
	if c != nil {
		return c.update(add)
	}
	ls, err := readLeftovers(a.cfg.StateDir)
	if err != nil {
		return err
	}
	return writeLeftovers(a.cfg.StateDir, add(ls))
}

// update rewrites the leftovers file with change applied.
func (c *cleaner) update(change func([]Leftover) []Leftover) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls, err := readLeftovers(c.a.cfg.StateDir)
	if err != nil {
		return err
	}
	return writeLeftovers(c.a.cfg.StateDir, change(ls))
}

// removeLeftover stops an old container with its own stop signal and
// timeout, and removes it; one already gone is not an error.
func (a *Agent) removeLeftover(l Leftover) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Health.Timeout+a.grace)
	defer cancel()
	return a.retry(ctx, a.log, "remove old container "+shortID(l.ID), func() error {
		if err := ignoreGone(a.docker.Stop(ctx, l.ID)); err != nil {
			return err
		}
		return a.docker.Remove(ctx, l.ID)
	})
}

// recoverLeftovers removes the old containers a crash left behind, and
// reports how many.
func (a *Agent) recoverLeftovers() (int, error) {
	ls, err := readLeftovers(a.cfg.StateDir)
	if err != nil || len(ls) == 0 {
		return 0, err
	}
	var errs []error
	var left []Leftover
	for _, l := range ls {
		if err := a.removeLeftover(l); err != nil {
			errs = append(errs, fmt.Errorf("slot %s: old container %s: %w", l.Slot, shortID(l.ID), err))
			left = append(left, l)
		}
	}
	if err := writeLeftovers(a.cfg.StateDir, left); err != nil {
		errs = append(errs, err)
	}
	return len(ls) - len(left), errors.Join(errs...)
}

func readLeftovers(dir string) ([]Leftover, error) {
	path := filepath.Join(dir, leftoversFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("leftovers: %w", err)
	}
	var ls []Leftover
	if err := json.Unmarshal(b, &ls); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): remove the containers it names (*-haroll-prev) by hand, then the file", path, err)
	}
	return ls, nil
}

// writeLeftovers replaces the file atomically; an empty list removes it.
func writeLeftovers(dir string, ls []Leftover) error {
	path := filepath.Join(dir, leftoversFile)
	if len(ls) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("leftovers: %w", err)
		}
		return nil
	}
	if err := atomicfile.WriteJSON(path, ls); err != nil {
		return fmt.Errorf("leftovers: %w", err)
	}
	return nil
}
