package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newApp(t *testing.T, cfg config) *httptest.Server {
	t.Helper()
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(handler(cfg, &ready))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

func servedNow(t *testing.T, base string) servedReport {
	t.Helper()
	resp, body := get(t, http.MethodGet, base+"/_served")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /_served: %s %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var raw map[string]int64
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatalf("GET /_served: %v: %s", err, body)
	}
	if len(raw) != 3 {
		t.Fatalf("GET /_served: keys of %s, want requests, first_unix_nano, last_unix_nano", body)
	}
	return servedReport{Requests: raw["requests"], FirstUnixNano: raw["first_unix_nano"], LastUnixNano: raw["last_unix_nano"]}
}

func TestServedCountsClientRequestsOnly(t *testing.T) {
	srv := newApp(t, config{version: "v7", hostname: "c0ffee"})

	if got := servedNow(t, srv.URL); got != (servedReport{}) {
		t.Fatalf("before any request: %+v, want zeros", got)
	}
	for range 3 {
		if resp, _ := get(t, http.MethodGet, srv.URL+"/health"); resp.StatusCode != http.StatusOK {
			t.Fatalf("/health: %s", resp.Status)
		}
	}
	if got := servedNow(t, srv.URL); got != (servedReport{}) {
		t.Fatalf("after health checks and /_served: %+v, want zeros", got)
	}
	if resp, _ := get(t, http.MethodPost, srv.URL+"/_served"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /_served: %s, want 405", resp.Status)
	}

	before := time.Now().UnixNano()
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, "/"}, {http.MethodGet, "/"}, {http.MethodGet, "/slow?ms=1"}, {http.MethodPost, "/anything"},
	} {
		resp, body := get(t, r.method, srv.URL+r.path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Server") != "c0ffee" || resp.Header.Get("X-Version") != "v7" || body != "version=v7\n" {
			t.Fatalf("%s %s: %s, X-Server %q, X-Version %q, body %q", r.method, r.path, resp.Status,
				resp.Header.Get("X-Server"), resp.Header.Get("X-Version"), body)
		}
	}
	after := time.Now().UnixNano()
	get(t, http.MethodGet, srv.URL+"/health")

	got := servedNow(t, srv.URL)
	if got.Requests != 4 || got.FirstUnixNano < before || got.LastUnixNano < got.FirstUnixNano || got.LastUnixNano > after {
		t.Fatalf("served %+v, want 4 requests between %d and %d", got, before, after)
	}
	if resp, _ := get(t, http.MethodGet, srv.URL+"/health"); resp.Header.Get("X-Server") != "" {
		t.Fatalf("/health has X-Server %q", resp.Header.Get("X-Server"))
	}
}

func TestServedCountsARequestWhenItArrives(t *testing.T) {
	srv := newApp(t, config{version: "v1", hostname: "h1"})

	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/slow?ms=2000")
		if err != nil {
			t.Errorf("/slow: %v", err)
			close(done)
			return
		}
		resp.Body.Close()
		done <- resp
	}()
	deadline := time.Now().Add(time.Second)
	for servedNow(t, srv.URL).Requests != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the slow request in flight is not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatalf("/slow?ms=2000 answered before it was counted")
	default:
	}
	if resp := <-done; resp != nil && (resp.StatusCode != http.StatusOK || resp.Header.Get("X-Server") != "h1") {
		t.Fatalf("/slow: %s, X-Server %q", resp.Status, resp.Header.Get("X-Server"))
	}
}

func TestErrorsAndAbandonedRequestsAreServedToo(t *testing.T) {
	srv := newApp(t, config{version: "v2", hostname: "h2", errorRate: 1})

	resp, body := get(t, http.MethodPost, srv.URL+"/")
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("X-Server") != "h2" || !strings.Contains(body, "failed on purpose") {
		t.Fatalf("with error rate 1: %s, X-Server %q, body %q", resp.Status, resp.Header.Get("X-Server"), body)
	}
	// A slow request whose client goes away is counted all the same.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow?ms=5000", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("/slow?ms=5000 answered %s within 50 ms", resp.Status)
	}
	if got := servedNow(t, srv.URL); got.Requests != 2 {
		t.Fatalf("served %+v, want 2", got)
	}
}

func TestXServerDefaultsToTheHostname(t *testing.T) {
	want, err := os.Hostname()
	if err != nil || want == "" {
		want = "unknown"
	}
	srv := newApp(t, config{version: "dev"})
	if resp, _ := get(t, http.MethodGet, srv.URL+"/"); resp.Header.Get("X-Server") != want {
		t.Fatalf("X-Server %q, want %q", resp.Header.Get("X-Server"), want)
	}
}

func TestAfterSIGTERMTheAppServesForItsShutdownDelayThenExits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const delay = 700 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- serve(ctx, config{port: port, shutdownDelay: delay, version: "v"}) }()
	health := func() int {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for deadline := time.Now().Add(5 * time.Second); health() != http.StatusOK; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the app never became ready")
		}
	}
	cancel() // SIGTERM
	signalled := time.Now()
	time.Sleep(delay / 2)
	if got := health(); got != http.StatusOK {
		t.Fatalf("/health %d during the shutdown delay, want 200", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(signalled); d < delay {
			t.Fatalf("exited %s after SIGTERM, want at least %s", d, delay)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the app did not exit after its shutdown delay")
	}
}
