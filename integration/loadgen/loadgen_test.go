package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// runFor runs the load generator for d and returns its result.
func runFor(t *testing.T, d time.Duration, opts Options) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res := Run(ctx, opts)
	if res.Err != nil {
		t.Fatalf("Run: %v", res.Err)
	}
	t.Logf("%s", res)
	return res
}

func TestCountsEveryNthFailureAndEveryOK(t *testing.T) {
	var hits, failed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method %s, want POST", r.Method)
		}
		if hits.Add(1)%5 == 0 {
			failed.Add(1)
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Version", "v1")
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()

	res := runFor(t, time.Second, Options{URL: srv.URL + "/", Rate: 200})

	if res.Sent == 0 || res.Sent != hits.Load() {
		t.Fatalf("sent %d, server saw %d", res.Sent, hits.Load())
	}
	if res.Failed != failed.Load() || res.OK != hits.Load()-failed.Load() {
		t.Fatalf("ok %d failed %d, server answered %d ok %d failed", res.OK, res.Failed, hits.Load()-failed.Load(), failed.Load())
	}
	want := fmt.Sprintf("503 Service Unavailable x%d", failed.Load())
	if len(res.Errors) != 1 || res.Errors[0] != want {
		t.Fatalf("errors %q, want [%q]", res.Errors, want)
	}
	if !errors.Is(res.Check(), ErrLost) {
		t.Fatalf("Check() = %v, want ErrLost", res.Check())
	}
}

func TestConnectionsClosedMidRequestAreFailuresAndNotRetried(t *testing.T) {
	var hits atomic.Int64
	var closed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%3 == 0 {
			closed.Add(1)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close() // no response at all: what a killed backend does
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()

	res := runFor(t, time.Second, Options{URL: srv.URL, Rate: 100, Workers: 4})

	// A retried request would reach the server twice for one Sent.
	if res.Sent != hits.Load() {
		t.Fatalf("sent %d, server saw %d: requests were retried", res.Sent, hits.Load())
	}
	if res.Failed != closed.Load() || res.Failed == 0 {
		t.Fatalf("failed %d, server closed %d", res.Failed, closed.Load())
	}
	if res.OK+res.Failed != res.Sent {
		t.Fatalf("ok %d + failed %d != sent %d", res.OK, res.Failed, res.Sent)
	}
}

func TestCountsVersionsAndReportsOnlyTheLastOnesAtTheEnd(t *testing.T) {
	var v2 atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v2.Load() {
			w.Header().Set("X-Version", "v2")
		} else {
			w.Header().Set("X-Version", "v1")
		}
	}))
	defer srv.Close()

	stop := Start(context.Background(), Options{URL: srv.URL, Rate: 200})
	time.Sleep(500 * time.Millisecond)
	v2.Store(true)
	time.Sleep(1500 * time.Millisecond)
	res := stop()
	t.Logf("%s", res)

	if res.ByVersion["v1"] == 0 || res.ByVersion["v2"] == 0 {
		t.Fatalf("by version %v, want both v1 and v2", res.ByVersion)
	}
	if res.ByVersion["v1"]+res.ByVersion["v2"] != res.OK || res.Failed != 0 {
		t.Fatalf("by version %v does not add up to ok %d (failed %d)", res.ByVersion, res.OK, res.Failed)
	}
	if strings.Join(res.LastVersions, ",") != "v2" {
		t.Fatalf("last versions %q, want [v2]", res.LastVersions)
	}
	if again := stop(); again.Sent != res.Sent {
		t.Fatalf("second stop() gave sent %d, first %d", again.Sent, res.Sent)
	}
	if err := res.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestResponsesWithoutVersionAreCountedAsNone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()

	res := runFor(t, 300*time.Millisecond, Options{URL: srv.URL, Rate: 100})
	if res.OK == 0 || res.ByVersion[NoVersion] != res.OK {
		t.Fatalf("by version %v, ok %d", res.ByVersion, res.OK)
	}
}

func TestHonorsTheRateLoosely(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()

	const rate = 300
	res := runFor(t, 2*time.Second, Options{URL: srv.URL, Rate: rate})
	want := float64(rate) * res.Duration.Seconds()
	if got := float64(res.Sent + res.Dropped); got < 0.5*want || got > 1.5*want {
		t.Fatalf("scheduled %v requests in %s, want about %v", got, res.Duration, want)
	}
}

func TestCountsRequestsItCouldNotStartAsDropped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(200 * time.Millisecond)
	}))
	defer srv.Close()

	// 2 workers at 200 ms each manage 10/s against a target of 100/s.
	res := runFor(t, time.Second, Options{URL: srv.URL, Rate: 100, Workers: 2})
	if res.Dropped == 0 {
		t.Fatalf("dropped 0, want the requests beyond the workers' capacity")
	}
	want := 100 * res.Duration.Seconds()
	if got := float64(res.Sent + res.Dropped); got < 0.5*want || got > 1.5*want {
		t.Fatalf("sent+dropped %v in %s, want about %v", got, res.Duration, want)
	}
	if !errors.Is(res.Check(), ErrLost) {
		t.Fatalf("Check() = %v, want ErrLost for dropped requests", res.Check())
	}
}

func TestCountsSlowRequestsApart(t *testing.T) {
	var fast, slow atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) { fast.Add(1) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		slow.Add(1)
		time.Sleep(300 * time.Millisecond)
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res := runFor(t, time.Second, Options{URL: srv.URL + "/", Rate: 100, SlowURL: srv.URL + "/slow", SlowEvery: 200 * time.Millisecond})
	if res.SlowSent < 2 || res.SlowSent != slow.Load() || res.SlowOK != res.SlowSent {
		t.Fatalf("slow: sent %d ok %d, server saw %d", res.SlowSent, res.SlowOK, slow.Load())
	}
	if res.Sent != fast.Load() || res.OK != res.Sent {
		t.Fatalf("sent %d ok %d, server saw %d fast ones", res.Sent, res.OK, fast.Load())
	}
	if err := res.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}

	res = runFor(t, 500*time.Millisecond, Options{URL: srv.URL + "/", Rate: 100, SlowURL: srv.URL + "/slow?fail=1", SlowEvery: 200 * time.Millisecond})
	if res.SlowFailed == 0 || res.SlowFailed != res.SlowSent || res.Failed != 0 {
		t.Fatalf("slow failed %d of %d, fast failed %d", res.SlowFailed, res.SlowSent, res.Failed)
	}
	if len(res.Errors) != 1 || !strings.HasPrefix(res.Errors[0], "slow: 502 Bad Gateway x") {
		t.Fatalf("errors %q", res.Errors)
	}
}

func TestRefusesTargetsOffThisMachine(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want error
	}{
		{"http://127.0.0.1:8080/", nil},
		{"http://127.3.4.5:8080/", nil},
		{"http://localhost/", nil},
		{"https://LOCALHOST:8443/", nil},
		{"http://[::1]:8080/", nil},
		{"http://10.0.0.1/", ErrNotLoopback},
		{"http://192.168.1.1:80/", ErrNotLoopback},
		{"http://8.8.8.8/", ErrNotLoopback},
		{"http://example.com/", ErrNotLoopback},
		{"http://localhost.example.com/", ErrNotLoopback},
		{"http://[::2]/", ErrNotLoopback},
		{"ftp://127.0.0.1/", ErrOptions},
		{"127.0.0.1:8080", ErrOptions},
		{"", ErrOptions},
	} {
		if err := checkTarget(tc.url); !errors.Is(err, tc.want) {
			t.Errorf("checkTarget(%q) = %v, want %v", tc.url, err, tc.want)
		}
	}

	res := Run(context.Background(), Options{URL: "http://10.1.2.3/", Rate: 10})
	if !errors.Is(res.Err, ErrNotLoopback) || res.Sent != 0 || len(res.Errors) != 1 {
		t.Fatalf("Run to 10.1.2.3: %+v", res)
	}
	if !errors.Is(res.Check(), ErrNotLoopback) {
		t.Fatalf("Check() = %v", res.Check())
	}
	res = Run(context.Background(), Options{URL: "http://127.0.0.1:1/", SlowURL: "http://example.com/slow", SlowEvery: time.Second, Rate: 10})
	if !errors.Is(res.Err, ErrNotLoopback) {
		t.Fatalf("Run with a remote slow URL: %+v", res)
	}
	if res := Run(context.Background(), Options{URL: "http://127.0.0.1:1/"}); !errors.Is(res.Err, ErrOptions) {
		t.Fatalf("Run with rate 0: %+v", res)
	}
}

func TestDialerRefusesNonLoopbackAddresses(t *testing.T) {
	if err := dialLoopbackOnly("tcp4", "127.0.0.1:80", nil); err != nil {
		t.Fatalf("loopback refused: %v", err)
	}
	if err := dialLoopbackOnly("tcp4", "10.0.0.1:80", nil); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("10.0.0.1 allowed: %v", err)
	}
}

func TestDescribesTransportErrorsWithoutAddresses(t *testing.T) {
	// Nothing listens on port 1 of 127.0.0.1.
	res := runFor(t, 200*time.Millisecond, Options{URL: "http://127.0.0.1:1/", Rate: 50})
	if res.Failed == 0 || res.OK != 0 {
		t.Fatalf("ok %d failed %d against a closed port", res.OK, res.Failed)
	}
	want := fmt.Sprintf("dial: connect: connection refused x%d", res.Failed)
	if len(res.Errors) != 1 || res.Errors[0] != want {
		t.Fatalf("errors %q, want [%q]", res.Errors, want)
	}
}

func TestKeepsTheFirstDistinctErrorsAndCountsTheRest(t *testing.T) {
	var tl tally
	for i := range maxErrors + 5 {
		tl.add(fmt.Sprintf("e%d", i))
	}
	tl.add("e0")
	got := tl.list()
	if len(got) != maxErrors+1 || got[0] != "e0 x2" || got[maxErrors] != "other failures x5" {
		t.Fatalf("list %q", got)
	}
}

func TestSummaryLine(t *testing.T) {
	r := Result{Sent: 6000, OK: 6000, SlowSent: 4, SlowOK: 4, ByVersion: map[string]int64{"v2": 3000, "v1": 3000},
		LastVersions: []string{"v2"}, Duration: 30 * time.Second}
	want := "sent 6000, ok 6000, failed 0, dropped 0 (slow: 4 sent, 4 ok, 0 failed), versions v1=3000 v2=3000, last v2, in 30s"
	if r.String() != want {
		t.Fatalf("String() =\n%s\nwant\n%s", r, want)
	}
}
