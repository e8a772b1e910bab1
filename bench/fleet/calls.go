package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// call is what an agent saw of one Redeploy, for the figures: when it
// arrived (the stream opened), when the report was sent, and the slot time
// the agent reported. Times are wall-clock: the children and the bench run
// on one machine.
type call struct {
	Index   int
	Slot    string
	Arrived time.Time
	Report  time.Time
	SlotDur time.Duration
}

// calls collects every call of a child's agents; it is safe for concurrent
// use.
type calls struct {
	mu  sync.Mutex
	all []call
}

func (c *calls) add(x call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = append(c.all, x)
}

func (c *calls) list() []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

// writeCalls writes cs to path, one line each: index, slot, arrival and
// report in Unix nanoseconds, slot time in nanoseconds.
func writeCalls(path string, cs []call) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("calls file: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, c := range cs {
		fmt.Fprintf(w, "%d %s %d %d %d\n", c.Index, c.Slot, c.Arrived.UnixNano(), c.Report.UnixNano(), int64(c.SlotDur))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("calls file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("calls file %s: %w", path, err)
	}
	return nil
}

// readCalls reads a file writeCalls wrote.
func readCalls(path string) ([]call, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("calls file: %w", err)
	}
	defer f.Close()
	var out []call
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 {
			return nil, fmt.Errorf("calls file %s:%d: want 5 fields, got %d", path, n, len(fs))
		}
		var v [4]int64
		for i, s := range []string{fs[0], fs[2], fs[3], fs[4]} {
			x, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("calls file %s:%d: %w", path, n, err)
			}
			v[i] = x
		}
		out = append(out, call{Index: int(v[0]), Slot: fs[1], Arrived: time.Unix(0, v[1]), Report: time.Unix(0, v[2]), SlotDur: time.Duration(v[3])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("calls file %s: %w", path, err)
	}
	return out, nil
}
