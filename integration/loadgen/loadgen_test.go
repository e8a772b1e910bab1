package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	if f := res.Failures[0]; int64(len(res.Failures)) != res.Failed || f.Status != 0 || f.Desc != "dial: connect: connection refused" || f.Client != 0 || f.Body != "" {
		t.Fatalf("%d failures for %d failed, first %+v", len(res.Failures), res.Failed, f)
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

// stickyApp is a stand-in for HAProxy's "cookie SRV insert": a request
// without a valid SRV cookie is given a server ("a" for odd X-Client, "b"
// otherwise, "b" while "a" is dead) and a Set-Cookie naming it; every response
// says its server in X-Server. It records what each X-Client sent.
type stickyApp struct {
	mu      sync.Mutex
	deadA   bool
	clients map[string]*seen // by X-Client header ("" when absent)
}

type seen struct {
	requests, slow, withoutCookie int
	cookies                       map[string]int // SRV values received
	remoteIPs                     map[string]int
	otherCookie                   bool // a Cookie header other than SRV
}

func newStickyApp() *stickyApp { return &stickyApp{clients: map[string]*seen{}} }

func (a *stickyApp) setDeadA(dead bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deadA = dead
}

func (a *stickyApp) seen() map[string]seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]seen{}
	for k, v := range a.clients {
		out[k] = *v
	}
	return out
}

func (a *stickyApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	name := r.Header.Get("X-Client")
	s := a.clients[name]
	if s == nil {
		s = &seen{cookies: map[string]int{}, remoteIPs: map[string]int{}}
		a.clients[name] = s
	}
	s.requests++
	if r.URL.Path == "/slow" {
		s.slow++
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	s.remoteIPs[ip]++
	if len(r.Cookies()) > 1 {
		s.otherCookie = true
	}
	server := ""
	if c, err := r.Cookie("SRV"); err == nil {
		s.cookies[c.Value]++
		server = c.Value
	} else {
		s.withoutCookie++
	}
	if server == "" || server == "a" && a.deadA {
		n, _ := strconv.Atoi(name)
		server = "b"
		if n%2 == 1 && !a.deadA {
			server = "a"
		}
		http.SetCookie(w, &http.Cookie{Name: "SRV", Value: server, Path: "/"})
	}
	a.mu.Unlock()
	w.Header().Set("X-Server", server)
	w.Header().Set("X-Version", "v1")
	_, _ = io.Copy(io.Discard, r.Body)
}

func clientName(n int) string { return strconv.Itoa(n) }

func TestClientsKeepTheirCookieAndSendTheirNumber(t *testing.T) {
	app := newStickyApp()
	srv := httptest.NewServer(app)
	defer srv.Close()

	const clients = 4
	// 80/s over 4 clients: each client sends one request every 50 ms.
	res := runFor(t, time.Second, Options{URL: srv.URL + "/", Rate: 80, Clients: clients})
	if err := res.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	got := app.seen()
	if _, ok := got[""]; ok || len(got) != clients {
		t.Fatalf("X-Client values %v, want 1..%d on every request", keys(got), clients)
	}
	if len(res.Clients) != clients {
		t.Fatalf("%d client stats, want %d", len(res.Clients), clients)
	}
	var total int64
	for i, cs := range res.Clients {
		n := i + 1
		s := got[clientName(n)]
		want := "b"
		if n%2 == 1 {
			want = "a"
		}
		if cs.N != n || cs.Sent != int64(s.requests) || cs.OK != cs.Sent || cs.Failed != 0 {
			t.Errorf("client %d: stats %+v, server saw %d requests", n, cs, s.requests)
		}
		// Every request after the first answer carries the client's own cookie;
		// a second one may have left before that answer on a slow machine.
		if s.requests < 5 || s.withoutCookie > 2 || s.cookies[want] != s.requests-s.withoutCookie || s.otherCookie {
			t.Errorf("client %d: %d requests, %d without cookie, cookies %v (want SRV=%s)", n, s.requests, s.withoutCookie, s.cookies, want)
		}
		if cs.Cookies != "SRV="+want || cs.LastServer != want || cs.Switches != 0 || len(cs.Servers) != 1 || cs.Servers[want] != cs.OK {
			t.Errorf("client %d: cookies %q, last server %q, switches %d, servers %v; want only %s", n, cs.Cookies, cs.LastServer, cs.Switches, cs.Servers, want)
		}
		if cs.SourceIP != "" || len(s.remoteIPs) != 1 || s.remoteIPs["127.0.0.1"] == 0 {
			t.Errorf("client %d: source %q, server saw %v, want 127.0.0.1 without SourceIPs", n, cs.SourceIP, s.remoteIPs)
		}
		total += cs.Sent
	}
	// Round-robin: the clients' shares differ by one at most.
	for _, cs := range res.Clients {
		if d := cs.Sent - res.Clients[0].Sent; d < -1 || d > 1 {
			t.Errorf("client sends %v, want round-robin", sentBy(res.Clients))
			break
		}
	}
	if total != res.Sent || res.Switches != 0 || res.Servers["a"]+res.Servers["b"] != res.OK || res.Servers["a"] == 0 || res.Servers["b"] == 0 {
		t.Fatalf("clients sent %d of %d; switches %d; servers %v of ok %d", total, res.Sent, res.Switches, res.Servers, res.OK)
	}
	if !strings.Contains(res.String(), ", 4 clients, 0 switches, servers a=") {
		t.Fatalf("summary %q lacks the clients", res)
	}
}

func TestClientsTakeAReplacedCookieAndCountTheSwitch(t *testing.T) {
	app := newStickyApp()
	srv := httptest.NewServer(app)
	defer srv.Close()

	stop := Start(context.Background(), Options{URL: srv.URL + "/", Rate: 80, Clients: 4})
	time.Sleep(600 * time.Millisecond)
	app.setDeadA(true) // clients 1 and 3 are moved to b, as a drained server's are
	time.Sleep(600 * time.Millisecond)
	res := stop()
	t.Logf("%s", res)
	if err := res.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	for i, cs := range res.Clients {
		want := int64(0)
		if cs.N%2 == 1 {
			want = 1
		}
		if cs.N != i+1 || cs.Switches != want || cs.LastServer != "b" || cs.Cookies != "SRV=b" {
			t.Errorf("client %d: %d switches (want %d), last server %q, cookies %q (want b)", cs.N, cs.Switches, want, cs.LastServer, cs.Cookies)
		}
		if cs.N%2 == 1 && (cs.Servers["a"] == 0 || cs.Servers["b"] == 0) {
			t.Errorf("client %d: servers %v, want both", cs.N, cs.Servers)
		}
	}
	if res.Switches != 2 || res.Servers["a"]+res.Servers["b"] != res.OK {
		t.Fatalf("switches %d (want 2), servers %v of ok %d", res.Switches, res.Servers, res.OK)
	}
	// After the switch no request of a moved client carries SRV=a any more
	// for long: the requests with SRV=b outnumber the few in flight.
	for name, s := range app.seen() {
		if n, _ := strconv.Atoi(name); n%2 == 1 && s.cookies["b"] < 3 {
			t.Errorf("client %s sent cookies %v, want SRV=b after the switch", name, s.cookies)
		}
	}
}

func TestClientsDialFromTheirOwnSourceAddress(t *testing.T) {
	app := newStickyApp()
	srv := httptest.NewServer(app)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	base := "http://localhost:" + port // resolved over IPv4 only with SourceIPs

	const clients = 3
	res := runFor(t, 600*time.Millisecond, Options{URL: base + "/", Rate: 60, Clients: clients, SourceIPs: true,
		SlowURL: base + "/slow", SlowEvery: 100 * time.Millisecond})
	if err := res.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	got := app.seen()
	var slow int
	for n := 1; n <= clients; n++ {
		s := got[clientName(n)]
		cs := res.Clients[n-1]
		want := fmt.Sprintf("127.0.1.%d", n)
		if cs.SourceIP != want || len(s.remoteIPs) != 1 || s.remoteIPs[want] != s.requests {
			t.Errorf("client %d: source %q, server saw %v, want only %s", n, cs.SourceIP, s.remoteIPs, want)
		}
		if s.slow == 0 || cs.Sent != int64(s.requests) {
			t.Errorf("client %d: %d slow requests of %d, stats say %d sent", n, s.slow, s.requests, cs.Sent)
		}
		slow += s.slow
	}
	if int64(slow) != res.SlowSent {
		t.Fatalf("server saw %d slow requests, sent %d", slow, res.SlowSent)
	}
	if len(got) != clients {
		t.Fatalf("X-Client values %v", keys(got))
	}
}

func TestWithoutClientsNoCookieNorClientHeaderIsSent(t *testing.T) {
	app := newStickyApp()
	srv := httptest.NewServer(app)
	defer srv.Close()

	res := runFor(t, 500*time.Millisecond, Options{URL: srv.URL + "/", Rate: 100})
	got := app.seen()
	s, ok := got[""]
	if !ok || len(got) != 1 || s.withoutCookie != s.requests || int64(s.requests) != res.Sent {
		t.Fatalf("server saw %+v for %d sent, want no X-Client and no cookie", got, res.Sent)
	}
	if res.Clients != nil || res.Switches != 0 || res.Servers["b"] != res.OK {
		t.Fatalf("clients %v, switches %d, servers %v", res.Clients, res.Switches, res.Servers)
	}
	if strings.Contains(res.String(), "clients") {
		t.Fatalf("summary %q mentions clients", res)
	}
}

func TestFailuresKeepTheBodysFirstLine(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Server", "c1")
		if hits.Add(1)%4 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "<html><body><h1>503 Service Unavailable</h1>\r\nNo server is available to handle this request.\n</body></html>\n")
		}
	}))
	defer srv.Close()

	res := runFor(t, 500*time.Millisecond, Options{URL: srv.URL + "/", Rate: 100, Clients: 3})
	if res.Failed == 0 || int64(len(res.Failures)) != res.Failed {
		t.Fatalf("%d failures for %d failed", len(res.Failures), res.Failed)
	}
	want := fmt.Sprintf("503 Service Unavailable x%d", res.Failed)
	if len(res.Errors) != 1 || res.Errors[0] != want {
		t.Fatalf("errors %q, want [%q]", res.Errors, want)
	}
	for _, f := range res.Failures {
		if f.Status != 503 || f.Desc != "503 Service Unavailable" || f.Body != "<html><body><h1>503 Service Unavailable</h1>" ||
			f.Server != "c1" || f.Slow || f.Client < 1 || f.Client > 3 || f.Start.IsZero() || f.Elapsed <= 0 {
			t.Fatalf("failure %+v", f)
		}
	}
	var failed int64
	for _, cs := range res.Clients {
		failed += cs.Failed
		if cs.OK+cs.Failed != cs.Sent {
			t.Errorf("client %+v does not add up", cs)
		}
	}
	if failed != res.Failed {
		t.Fatalf("clients failed %d, run %d", failed, res.Failed)
	}
}

func TestFirstLine(t *testing.T) {
	long := strings.Repeat("é", maxBodyLine) // 2 bytes each
	for in, want := range map[string]string{
		"":                       "",
		"  one\r\ntwo\n":         "one",
		"no newline":             "no newline",
		long + "\n":              strings.Repeat("é", maxBodyLine/2),
		"x" + long[:maxBodyLine]: "x" + strings.Repeat("é", maxBodyLine/2-1),
	} {
		if got := firstLine([]byte(in)); got != want {
			t.Errorf("firstLine(%.20q...) = %.20q... (%d bytes), want %.20q... (%d bytes)", in, got, len(got), want, len(want))
		}
	}
}

func TestClientOptions(t *testing.T) {
	for _, o := range []Options{
		{URL: "http://127.0.0.1:1/", Rate: 1, Clients: -1},
		{URL: "http://127.0.0.1:1/", Rate: 1, Clients: MaxClients + 1},
		{URL: "http://127.0.0.1:1/", Rate: 1, SourceIPs: true},
		{URL: "http://[::1]:1/", Rate: 1, Clients: 2, SourceIPs: true},
		{URL: "http://127.0.0.1:1/", Rate: 1, Clients: 2, SourceIPs: true, SlowURL: "http://[::1]:1/slow"},
	} {
		if _, err := o.withDefaults(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v, want ErrOptions", o, err)
		}
	}
	for _, o := range []Options{
		{URL: "http://127.0.0.1:1/", Rate: 1, Clients: MaxClients, SourceIPs: true},
		{URL: "http://[::1]:1/", Rate: 1, Clients: 2},
		{URL: "http://localhost:1/", Rate: 1, Clients: 2, SourceIPs: true},
	} {
		if _, err := o.withDefaults(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for n, want := range map[int]string{1: "127.0.1.1", 254: "127.0.1.254", 255: "127.0.2.1", MaxClients: "127.0.254.254"} {
		if got := sourceIP(n).String(); got != want {
			t.Errorf("sourceIP(%d) = %s, want %s", n, got, want)
		}
	}
}

func keys(m map[string]seen) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sentBy(cs []ClientStats) []int64 {
	var out []int64
	for _, c := range cs {
		out = append(out, c.Sent)
	}
	return out
}
