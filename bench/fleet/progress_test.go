package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStepStartsAreSeenInTheProgressAsItIsWrittenEvenAcrossPartialLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "progress.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop, err := watchStepStarts(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write("batch 1/3  start: 4 host(s), 3 slot(s) each\nbatch 1/3 step 1/3 app-1  start on 4 host(s)\n")
	write("batch 1/3 step 1/3 app-1  127.0.0.1:4000  start          4.7ms\n")
	time.Sleep(50 * time.Millisecond)
	write("batch 1/3 step 2/3 app-2  sta") // the rest of the line comes later
	time.Sleep(50 * time.Millisecond)
	ended := time.Now()
	write("rt on 4 host(s)\n{\"level\":\"WARN\",\"msg\":\"start on nothing\"}\n")
	time.Sleep(50 * time.Millisecond)
	write("batch 2/3 step 1/3 app-1  start on 4 host(s)\n") // seen by the last read, after stop
	seen, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 {
		t.Fatalf("step starts %v, want batch 1 steps 1 and 2, batch 2 step 1", seen)
	}
	if s1, s2 := seen[stepKey{1, 1}], seen[stepKey{1, 2}]; s1.After(s2) || s2.Before(ended) {
		t.Errorf("step 1 seen at %s, step 2 at %s: want step 2 seen once its line ended, at %s", s1, s2, ended)
	}
}
