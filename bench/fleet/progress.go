package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// stepKey is a step's place in the plan, both 1-based.
type stepKey struct{ batch, step int }

// stepStartLine is the coordinator's plain progress line for a step's start,
// e.g. "batch 1/3 step 2/3 app-2  start on 350 host(s)".
var stepStartLine = regexp.MustCompile(`^batch (\d+)/\d+ step (\d+)/\d+ .*  start on \d+ host`)

// watchStepStarts follows the progress file at path as the coordinator
// writes it (as `tail -f` would: it never holds the writer up), woken by
// inotify at each write, and notes when each step's start line appears
// (within a millisecond).
// The returned function stops it and returns the times seen; a build whose
// progress has no such line leaves them out.
func watchStepStarts(path string) (stop func() (map[stepKey]time.Time, error), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// A non-blocking descriptor: reads wait in Go's poller, and Close
	// wakes them.
	notify := os.NewFile(uintptr(fd), "inotify")
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_MODIFY); err != nil {
		f.Close()
		notify.Close()
		return nil, fmt.Errorf("inotify %s: %w", path, err)
	}
	seen := map[stepKey]time.Time{}
	var pending []byte
	buf := make([]byte, 64<<10)
	readNew := func(now time.Time) error {
		for {
			n, err := f.Read(buf)
			pending = readLines(pending, buf[:n], func(line []byte) {
				if k, ok := parseStepStart(line); ok {
					if _, dup := seen[k]; !dup {
						seen[k] = now
					}
				}
			})
			if errors.Is(err, io.EOF) || n == 0 {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	var readErr error
	wg.Go(func() {
		events := make([]byte, 4096)
		for {
			if _, err := notify.Read(events); err != nil {
				return // closed by stop
			}
			if err := readNew(time.Now()); err != nil {
				readErr = err
				return
			}
			// At most one wake-up per millisecond, however fast the
			// coordinator writes (the writes meanwhile coalesce into one
			// event): a line's time is late by a millisecond at most.
			time.Sleep(time.Millisecond)
		}
	})
	return func() (map[stepKey]time.Time, error) {
		notify.Close()
		wg.Wait()
		defer f.Close()
		if readErr != nil {
			return seen, fmt.Errorf("following %s: %w", path, readErr)
		}
		return seen, readNew(time.Now()) // what the last event did not cover
	}, nil
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
