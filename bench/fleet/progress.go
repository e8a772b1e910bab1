package main

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// stepKey is a step's place in the plan, both 1-based.
type stepKey struct{ batch, step int }

// stepStartLine is the coordinator's plain progress line for a step's start,
// e.g. "batch 1/3 step 2/3 app-2  start on 350 host(s)".
var stepStartLine = regexp.MustCompile(`^batch (\d+)/\d+ step (\d+)/\d+ .*  start on \d+ host`)

// watchStepStarts follows the progress file at path as the coordinator
// writes it (as `tail -f` would: it never holds the writer up) and notes when
// each step's start line appears, every poll. The returned function stops
// it and returns the times seen; a build whose progress has no such line
// leaves them out.
func watchStepStarts(path string, poll time.Duration) (stop func() map[stepKey]time.Time) {
	seen := map[stepKey]time.Time{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var f *os.File
		defer func() {
			if f != nil {
				f.Close()
			}
		}()
		var pending []byte
		buf := make([]byte, 64<<10)
		t := time.NewTicker(poll)
		defer t.Stop()
		for last := false; !last; {
			select {
			case <-done:
				last = true // one more read: the end of the file
			case <-t.C:
			}
			if f == nil {
				var err error
				if f, err = os.Open(path); err != nil {
					continue
				}
			}
			now := time.Now()
			for {
				n, err := f.Read(buf)
				pending = readLines(pending, buf[:n], func(line []byte) {
					if k, ok := parseStepStart(line); ok {
						if _, dup := seen[k]; !dup {
							seen[k] = now
						}
					}
				})
				if n == 0 || err != nil {
					break
				}
			}
		}
	})
	return func() map[stepKey]time.Time { close(done); wg.Wait(); return seen }
}

// readLines calls fn with every complete line in pending+b and returns
// what is left: the start of a line not yet ended.
func readLines(pending, b []byte, fn func([]byte)) []byte {
	pending = append(pending, b...)
	i := bytes.LastIndexByte(pending, '\n')
	if i < 0 {
		return pending
	}
	for line := range bytes.SplitSeq(pending[:i], []byte("\n")) {
		fn(line)
	}
	return append(pending[:0], pending[i+1:]...)
}

// parseStepStart reads a step start line.
func parseStepStart(line []byte) (stepKey, bool) {
	if !bytes.Contains(line, []byte("start on")) {
		return stepKey{}, false
	}
	m := stepStartLine.FindSubmatch(line)
	if m == nil {
		return stepKey{}, false
	}
	b, _ := strconv.Atoi(string(m[1]))
	s, _ := strconv.Atoi(string(m[2]))
	return stepKey{b, s}, true
}
