package rollout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Fleets the fuzz targets try Size.Of and Threshold.Exceeded on, besides the
// fuzzed one: the edges of rounding a share up.
var fuzzFleets = []int{1, 2, 3, 7, 99, 100, 101, 1000}

// fuzzCount maps any fuzzed int onto 0..limit, so that sizes stay those of a
// fleet and products such as percent × hosts cannot overflow.
func fuzzCount(n, limit int) int {
	n %= limit + 1
	if n < 0 {
		n = -n
	}
	return n
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "3", "35%", "100%", "1%", " 7 ", "007", "0", "0%", "101%", "-1", "+2",
		"3.5", "%", "", "5 %", "9223372036854775807", "9223372036854775808", "１"} {
		f.Add(s, 10)
	}
	f.Fuzz(func(t *testing.T, in string, fleet int) {
		s, err := ParseSize(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidSize) || !s.IsZero() {
				t.Fatalf("ParseSize(%q) = %+v, %v; want the zero Size and ErrInvalidSize", in, s, err)
			}
			return
		}
		digits, pct := strings.CutSuffix(strings.TrimSpace(in), "%")
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			t.Fatalf("ParseSize(%q) accepted more than digits and an optional %%: %+v", in, s)
		}
		switch {
		case s.IsZero():
			t.Fatalf("ParseSize(%q) = the zero Size without an error", in)
		case (s.count > 0) == (s.percent > 0) || s.count < 0 || s.percent < 0:
			t.Fatalf("ParseSize(%q) = %+v: want exactly one of a positive count or percentage", in, s)
		case pct != (s.percent > 0):
			t.Fatalf("ParseSize(%q) = %+v: a percentage iff the input ends in %%", in, s)
		case s.percent > 100:
			t.Fatalf("ParseSize(%q) = %+v: a percentage above 100", in, s)
		}
		back, err := ParseSize(s.String())
		if err != nil || back != s {
			t.Fatalf("ParseSize(%q).String() = %q, which parses to %+v, %v", in, s.String(), back, err)
		}
		if got := s.Of(0); got != 0 {
			t.Fatalf("%s of 0 hosts = %d, want 0", s, got)
		}
		for _, n := range append(fuzzFleets, 1+fuzzCount(fleet, 1_000_000)) {
			got := s.Of(n)
			if got < 1 || got > n {
				t.Fatalf("%s of %d hosts = %d, want 1..%d", s, n, got, n)
			}
			want := min(s.count, n)
			if s.percent > 0 {
				want = (s.percent*n + 99) / 100 // ceil(percent × n / 100), at least 1 as percent >= 1
			}
			if got != want {
				t.Fatalf("%s of %d hosts = %d, want %d", s, n, got, want)
			}
			if n > 1 && s.Of(n-1) > got {
				t.Fatalf("%s of %d hosts = %d, more than of %d hosts (%d)", s, n-1, s.Of(n-1), n, got)
			}
		}
	})
}

func FuzzParseMaxFailures(f *testing.F) {
	for _, s := range []string{"0", "1", "3", "0%", "10%", "100%", "101%", " 2 ", "-1", "x", "", "1e3", "50 %"} {
		f.Add(s, 3, 10)
	}
	f.Fuzz(func(t *testing.T, in string, failed, total int) {
		th, err := ParseMaxFailures(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidSize) || th != (Threshold{}) {
				t.Fatalf("ParseMaxFailures(%q) = %+v, %v; want the zero Threshold and ErrInvalidSize", in, th, err)
			}
			return
		}
		digits, pct := strings.CutSuffix(strings.TrimSpace(in), "%")
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			t.Fatalf("ParseMaxFailures(%q) accepted more than digits and an optional %%: %+v", in, th)
		}
		switch {
		case pct != th.isPct:
			t.Fatalf("ParseMaxFailures(%q) = %+v: a percentage iff the input ends in %%", in, th)
		case th.count < 0 || th.percent < 0 || th.percent > 100:
			t.Fatalf("ParseMaxFailures(%q) = %+v: out of range", in, th)
		case th.isPct && th.count != 0, !th.isPct && th.percent != 0:
			t.Fatalf("ParseMaxFailures(%q) = %+v: both a count and a percentage", in, th)
		}
		back, err := ParseMaxFailures(th.String())
		if err != nil || back != th {
			t.Fatalf("ParseMaxFailures(%q).String() = %q, which parses to %+v, %v", in, th.String(), back, err)
		}
		total = fuzzCount(total, 1_000_000)
		failed = fuzzCount(failed, total)
		if th.Exceeded(0, total) {
			t.Fatalf("%s: no failed host out of %d exceeds it", th, total)
		}
		if th.Exceeded(failed, total) && !th.Exceeded(failed+1, total) {
			t.Fatalf("%s: %d failed of %d exceed it but %d do not", th, failed, total, failed+1)
		}
		if th.isPct && th.percent == 100 && th.Exceeded(total, total) {
			t.Fatalf("100%%: every host of %d failing exceeds it", total)
		}
	})
}

func FuzzNewPlan(f *testing.F) {
	f.Add(10, 3, "35%", "")
	f.Add(10, 2, "3", "1")
	f.Add(7, 1, "100%", "50%")
	f.Add(1, 1, "1", "1")
	f.Add(5, 4, "10", "10")
	f.Add(0, 1, "1", "")
	f.Add(3, 0, "1", "")
	f.Add(3, 2, "", "")
	f.Add(300, 5, "1%", "1%")
	f.Fuzz(func(t *testing.T, nHosts, nSlots int, batch, canary string) {
		hosts := hostNames(fuzzCount(nHosts, 1000))
		slots := make([]string, fuzzCount(nSlots, 8))
		for i := range slots {
			slots[i] = fmt.Sprintf("s%d", i)
		}
		var s Strategy
		if batch != "" {
			b, err := ParseSize(batch)
			if err != nil {
				return
			}
			s.Batch = b
		}
		if canary != "" {
			c, err := ParseSize(canary)
			if err != nil {
				return
			}
			s.Canary = c
		}
		p, err := NewPlan(hosts, slots, s)
		if len(hosts) == 0 || len(slots) == 0 || s.Batch.IsZero() {
			if !errors.Is(err, ErrInvalidPlan) {
				t.Fatalf("%d hosts, %d slots, batch %q: got %v, want ErrInvalidPlan", len(hosts), len(slots), s.Batch, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d hosts, %d slots, batch %s, canary %q: %v", len(hosts), len(slots), s.Batch, s.Canary, err)
		}
		if p.Hosts() != len(hosts) {
			t.Fatalf("plan.Hosts() = %d, want %d", p.Hosts(), len(hosts))
		}
		checkPlan(t, p, hosts, slots, s)
	})
}
