package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"
)

// timeline keeps the lines a command writes (haroll's progress: one line
// per finished phase) with when each arrived, to show where a run's time
// went and which phases of different slots overlapped.
type timeline struct {
	begin   time.Time
	mu      sync.Mutex
	partial []byte
	lines   []timedLine
}

type timedLine struct {
	at   time.Duration // since begin
	text string
}

func newTimeline(begin time.Time) *timeline { return &timeline{begin: begin} }

func (t *timeline) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, timedLine{at: time.Since(t.begin), text: strings.TrimRight(string(t.partial[:i]), "\r")})
		t.partial = t.partial[i+1:]
	}
	return len(p), nil
}

// String is every line, each after the time it arrived at ("+1.23s").
func (t *timeline) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for _, l := range t.lines {
		fmt.Fprintf(&b, "  +%-7s %s\n", ms(l.at), l.text)
	}
	if len(t.partial) > 0 {
		fmt.Fprintf(&b, "  (end)   %s\n", t.partial)
	}
	return b.String()
}
