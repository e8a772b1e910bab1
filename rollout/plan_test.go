package rollout

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestParseSizeReadsCountsAndPercentages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		of10 int
	}{
		{"35%", "35%", 4},
		{"100%", "100%", 10},
		{"1%", "1%", 1},
		{"3", "3", 3},
		{" 7 ", "7", 7},
		{"50", "50", 10},
	} {
		s, err := ParseSize(tc.in)
		if err != nil {
			t.Errorf("ParseSize(%q): %v", tc.in, err)
			continue
		}
		if s.String() != tc.want || s.Of(10) != tc.of10 {
			t.Errorf("ParseSize(%q) = %s, of 10 = %d; want %s, %d", tc.in, s, s.Of(10), tc.want, tc.of10)
		}
	}
}

func TestParseSizeRejectsWhatIsNotAPositiveWholeSize(t *testing.T) {
	for _, in := range []string{"", " ", "0", "0%", "101%", "-1", "-5%", "35.5%", "3.0", "abc", "3x", "%", "35%%", "1e3", "+3", "99999999999999999999"} {
		if s, err := ParseSize(in); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("ParseSize(%q) = %v, %v; want ErrInvalidSize", in, s, err)
		}
	}
}

func TestASizeIsTheCeilingOfItsShareAndAtLeastOneHost(t *testing.T) {
	for _, tc := range []struct {
		size string
		n    int
		want int
	}{
		{"35%", 1, 1}, {"35%", 3, 2}, {"35%", 20, 7}, {"35%", 1000, 350}, {"1%", 1000, 10},
		{"1%", 50, 1}, {"10", 3, 3}, {"10", 0, 0},
	} {
		s, _ := ParseSize(tc.size)
		if got := s.Of(tc.n); got != tc.want {
			t.Errorf("%s of %d = %d, want %d", tc.size, tc.n, got, tc.want)
		}
	}
}

func hostNames(n int) []string {
	hs := make([]string, n)
	for i := range hs {
		hs[i] = fmt.Sprintf("h%d", i+1)
	}
	return hs
}

func mustSize(t *testing.T, s string) Size {
	t.Helper()
	if s == "" {
		return Size{}
	}
	sz, err := ParseSize(s)
	if err != nil {
		t.Fatal(err)
	}
	return sz
}

func TestPlanGroupsHostsInInventoryOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hosts  int
		batch  string
		canary string
		want   [][]string
	}{
		{"a third of 3 hosts is one host per batch", 3, "33%", "", [][]string{{"h1"}, {"h2"}, {"h3"}}},
		{"35% of 5 hosts rounds up to 2", 5, "35%", "", [][]string{{"h1", "h2"}, {"h3", "h4"}, {"h5"}}},
		{"a count larger than the fleet is the whole fleet", 3, "10", "", [][]string{{"h1", "h2", "h3"}}},
		{"a canary comes first and is not repeated", 5, "2", "1", [][]string{{"h1"}, {"h2", "h3"}, {"h4", "h5"}}},
		{"a percentage canary rounds up", 10, "50%", "10%", [][]string{{"h1"}, {"h2", "h3", "h4", "h5", "h6"}, {"h7", "h8", "h9", "h10"}}},
		{"a canary of the whole fleet leaves no other batch", 2, "1", "100%", [][]string{{"h1", "h2"}}},
		{"one host is one batch", 1, "35%", "", [][]string{{"h1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlan(hostNames(tc.hosts), []string{"a", "b"}, Strategy{Batch: mustSize(t, tc.batch), Canary: mustSize(t, tc.canary)})
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for i, b := range p.Batches {
				got = append(got, b.Hosts)
				if b.Canary != (tc.canary != "" && i == 0) {
					t.Errorf("batch %d canary = %v", i, b.Canary)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("batches %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEveryBatchReplacesOneSlotAtATimeOnAllItsHosts(t *testing.T) {
	p, err := NewPlan([]string{"x", "y", "z"}, []string{"app-1", "app-2", "app-3"}, Strategy{Batch: mustSize(t, "2")})
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{Batches: []Batch{
		{Hosts: []string{"x", "y"}, Steps: []Step{{"app-1", []string{"x", "y"}}, {"app-2", []string{"x", "y"}}, {"app-3", []string{"x", "y"}}}},
		{Hosts: []string{"z"}, Steps: []Step{{"app-1", []string{"z"}}, {"app-2", []string{"z"}}, {"app-3", []string{"z"}}}},
	}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
}

func TestPlanRefusesInputsNoRolloutCanBeMadeFrom(t *testing.T) {
	batch := mustSize(t, "1")
	for name, tc := range map[string]struct {
		hosts, slots []string
		s            Strategy
	}{
		"no host":       {nil, []string{"a"}, Strategy{Batch: batch}},
		"no slot":       {[]string{"h"}, nil, Strategy{Batch: batch}},
		"a host twice":  {[]string{"h", "h"}, []string{"a"}, Strategy{Batch: batch}},
		"a slot twice":  {[]string{"h"}, []string{"a", "a"}, Strategy{Batch: batch}},
		"an empty slot": {[]string{"h"}, []string{""}, Strategy{Batch: batch}},
		"no batch size": {[]string{"h"}, []string{"a"}, Strategy{}},
	} {
		if _, err := NewPlan(tc.hosts, tc.slots, tc.s); !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("%s: got %v, want ErrInvalidPlan", name, err)
		}
	}
}

func TestMaxFailuresIsACountOrAShareOfTheFleet(t *testing.T) {
	for _, tc := range []struct {
		in            string
		failed, total int
		exceeded      bool
	}{
		{"0", 0, 10, false},
		{"0", 1, 10, true},
		{"2", 2, 10, false},
		{"2", 3, 10, true},
		{"0%", 1, 1000, true},
		{"10%", 10, 100, false},
		{"10%", 11, 100, true},
		{"10%", 1, 5, true}, // 1 of 5 is 20%
		{"100%", 5, 5, false},
	} {
		th, err := ParseMaxFailures(tc.in)
		if err != nil {
			t.Fatalf("ParseMaxFailures(%q): %v", tc.in, err)
		}
		if got := th.Exceeded(tc.failed, tc.total); got != tc.exceeded {
			t.Errorf("%s: %d of %d exceeded = %v, want %v", tc.in, tc.failed, tc.total, got, tc.exceeded)
		}
	}
	for _, in := range []string{"", "-1", "101%", "1.5", "x%"} {
		if _, err := ParseMaxFailures(in); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("ParseMaxFailures(%q) = %v, want ErrInvalidSize", in, err)
		}
	}
}
