package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults applied by Run when the matching Options field is zero.
const (
	DefaultWorkers = 64
	DefaultTimeout = 10 * time.Second
)

// NoVersion is the ByVersion key of OK responses without an X-Version header.
const NoVersion = "(none)"

// NoServer is the Servers key of OK responses without an X-Server header.
const NoServer = "(none)"

// MaxClients is the largest Options.Clients: with SourceIPs, clients dial from
// 127.0.1.1 to 127.0.254.254 (hosts .1 to .254 of 254 subnets).
const MaxClients = 254 * 254

const (
	maxErrors   = 20          // distinct failure descriptions kept in Result.Errors
	maxFailures = 1000        // failed requests kept in Result.Failures
	maxBodyLine = 200         // bytes of a failed response's first body line kept in Failure.Body
	lastWindow  = time.Second // how far back Result.LastVersions looks
)

var (
	// ErrNotLoopback is returned (in Result.Err) for a target outside
	// 127.0.0.0/8, ::1 and localhost: load is only ever sent to this machine.
	ErrNotLoopback = errors.New("target is not a loopback address")
	// ErrOptions is returned (in Result.Err) for options that cannot be run.
	ErrOptions = errors.New("invalid load options")
	// ErrLost is returned by Result.Check when a request failed or was dropped.
	ErrLost = errors.New("requests lost")
)

// Options says where to send load and how much.
type Options struct {
	URL string // e.g. http://127.0.0.1:PORT/; must be loopback
	// Rate is the target number of requests per second (> 0). It is open-loop:
	// requests are scheduled by the clock, not when the previous one ends, and
	// a request that finds every worker busy is counted in Result.Dropped.
	Rate    int
	Workers int // concurrency cap (default DefaultWorkers)
	// SlowURL is the URL of slow requests, e.g. http://127.0.0.1:PORT/slow?ms=3000;
	// one is started at once and then every SlowEvery (0 = none). They run
	// outside the worker pool and are counted apart from the others.
	SlowURL   string
	SlowEvery time.Duration
	Timeout   time.Duration // per request (default DefaultTimeout)

	// Clients, when > 0, sends the load from that many simulated clients
	// (at most MaxClients) instead of one shared transport. Each client has
	// its own cookie jar (it keeps the cookies the server sets, e.g.
	// HAProxy's "cookie SRV insert", sends them back and takes a replaced
	// one, as a browser does), its own http.Transport (its own keep-alive
	// connections) and sends the header "X-Client: <n>", n = 1..Clients.
	// Every scheduled request and every slow request is sent by the next
	// client in round-robin order (a dropped request takes no turn).
	// 0 keeps one shared transport, no cookies and no X-Client header.
	Clients int
	// SourceIPs (only with Clients > 0) makes client n dial from its own
	// loopback address: 127.0.1.1 for client 1, 127.0.1.2 for client 2, ...,
	// 127.0.1.254, then 127.0.2.1 and so on, so that HAProxy's "stick on src"
	// sees each client apart. Connections then use IPv4 only: the targets must
	// not be [::1].
	SourceIPs bool
}

// Result is what a run counted. Sent == OK + Failed and SlowSent == SlowOK +
// SlowFailed once the run has returned.
type Result struct {
	Sent, OK, Failed int64
	// Dropped counts scheduled requests that were never sent because all
	// workers were busy and the backlog was full: the target rate was not met.
	Dropped                      int64
	SlowSent, SlowOK, SlowFailed int64
	// ByVersion counts OK (non-slow) responses by their X-Version header.
	ByVersion map[string]int64
	// Errors holds the first distinct failure descriptions with counts,
	// e.g. "503 Service Unavailable x3"; slow ones start with "slow: ".
	Errors []string
	// Duration is how long requests were scheduled (not counting the wait
	// for in-flight ones at the end).
	Duration time.Duration
	// LastVersions are the versions of OK responses to requests started in the
	// last second of the run, sorted.
	LastVersions []string
	// Servers counts OK (non-slow) responses by their X-Server header (the
	// container that answered), NoServer for responses without one.
	Servers map[string]int64
	// Switches is the sum of Clients[i].Switches: how many times a client's
	// OK response came from another X-Server than its previous one. A client
	// that stays pinned never switches; one moved by a drain switches once.
	// Always 0 when Options.Clients is 0.
	Switches int64
	// Clients has one entry per simulated client (Clients[i] is client i+1);
	// nil when Options.Clients is 0.
	Clients []ClientStats
	// Failures are the first failed requests (up to 1000, in the order they
	// failed), with details that Errors leaves out, such as the first line
	// of a 5xx response's body.
	Failures []Failure
	// Err is set when the run could not start (ErrOptions, ErrNotLoopback);
	// nothing was sent then.
	Err error
}

// ClientStats is what one simulated client (Options.Clients > 0) saw.
type ClientStats struct {
	N int // its number, 1..Options.Clients, sent as header X-Client
	// SourceIP is the loopback address it dialed from with Options.SourceIPs,
	// e.g. "127.0.1.1"; "" without.
	SourceIP string
	// Sent, OK and Failed count all its requests, slow ones included
	// (dropped requests belong to no client).
	Sent, OK, Failed int64
	// Servers counts its OK non-slow responses by X-Server (NoServer when
	// missing).
	Servers map[string]int64
	// Switches counts how many times its OK non-slow response came from
	// another X-Server than its previous one. Responses are taken in the
	// order their requests started: a response to a request that started
	// before the one last taken is skipped (two requests of one client can
	// overlap), and so are responses without X-Server.
	Switches int64
	// LastServer is the X-Server of the last response taken for Switches
	// ("" when none).
	LastServer string
	// Cookies are the cookies its jar holds for Options.URL when the run
	// ends, as a Cookie header would carry them, e.g. "SRV=s1" ("" when none).
	Cookies string
}

// Failure is one failed request.
type Failure struct {
	Start   time.Time     // when it was sent
	Elapsed time.Duration // until it failed
	Client  int           // the client that sent it, 1..Options.Clients; 0 when Clients is 0
	Slow    bool          // a request to SlowURL
	// Status is the HTTP status code of the response; 0 for a transport
	// error (no response) or a response that was not read in full.
	Status int
	// Desc is its description as counted in Result.Errors, without the
	// "slow: " mark and the count, e.g. "503 Service Unavailable" or "EOF".
	Desc string
	// Body is the first line of the response body for a non-200 response,
	// without surrounding spaces and at most 200 bytes. For HAProxy's own
	// error pages it is e.g. "<html><body><h1>503 Service Unavailable</h1>";
	// the test app's is e.g. "version=v1 failed on purpose".
	Body string
	// Server is the response's X-Server header, if any: which container
	// answered with the error.
	Server string
}

// Lost is the number of requests that did not get a 200 OK, dropped ones included.
func (r Result) Lost() int64 { return r.Failed + r.SlowFailed + r.Dropped }

// Check returns nil when the run sent requests and lost none. Otherwise it
// returns Err, or an error wrapping ErrLost that includes the whole summary.
func (r Result) Check() error {
	switch {
	case r.Err != nil:
		return r.Err
	case r.Sent == 0:
		return fmt.Errorf("%w: no request was sent: %s", ErrLost, r)
	case r.Lost() > 0:
		return fmt.Errorf("%w: %s", ErrLost, r)
	}
	return nil
}

// String is a one-line summary, e.g. "sent 6000, ok 6000, failed 0, dropped 0
// (slow: 4 sent, 4 ok, 0 failed), versions v1=3000 v2=3000, last v2, in 30s";
// with Options.Clients, ", 8 clients, 4 switches, servers c1=2000 c2=4000"
// comes before ", in".
func (r Result) String() string {
	if r.Err != nil {
		return "loadgen: " + r.Err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, ok %d, failed %d, dropped %d (slow: %d sent, %d ok, %d failed), versions",
		r.Sent, r.OK, r.Failed, r.Dropped, r.SlowSent, r.SlowOK, r.SlowFailed)
	appendCounts(&b, r.ByVersion)
	if len(r.LastVersions) > 0 {
		fmt.Fprintf(&b, ", last %s", strings.Join(r.LastVersions, " "))
	}
	if len(r.Clients) > 0 {
		fmt.Fprintf(&b, ", %d clients, %d switches, servers", len(r.Clients), r.Switches)
		appendCounts(&b, r.Servers)
	}
	fmt.Fprintf(&b, ", in %s", r.Duration.Round(10*time.Millisecond))
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "; errors: %s", strings.Join(r.Errors, ", "))
	}
	return b.String()
}

// appendCounts writes " k=v" for each key of m in order, or " none".
func appendCounts(b *strings.Builder, m map[string]int64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		b.WriteString(" none")
	}
	for _, k := range keys {
		fmt.Fprintf(b, " %s=%d", k, m[k])
	}
}

// Run sends requests until ctx is done, then waits for the in-flight ones
// (each bounded by Options.Timeout) and returns what it counted. Bad options
// or a non-loopback target give a Result with Err set and nothing sent.
func Run(ctx context.Context, opts Options) Result {
	opts, err := opts.withDefaults()
	if err != nil {
		return Result{Err: err, Errors: []string{err.Error()}, ByVersion: map[string]int64{}, Servers: map[string]int64{}}
	}
	return newRunner(opts).run(ctx)
}

// Start runs Run in the background. The returned stop function ends the run,
// waits for in-flight requests and returns the Result; calling it again
// returns the same Result. Cancelling ctx also ends the run.
func Start(ctx context.Context, opts Options) (stop func() Result) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan Result, 1)
	go func() { done <- Run(ctx, opts) }()
	var (
		once sync.Once
		res  Result
	)
	return func() Result {
		once.Do(func() {
			cancel()
			res = <-done
		})
		return res
	}
}

func (o Options) withDefaults() (Options, error) {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Rate <= 0 {
		return o, fmt.Errorf("%w: rate %d: want > 0 requests per second", ErrOptions, o.Rate)
	}
	if o.Clients < 0 || o.Clients > MaxClients {
		return o, fmt.Errorf("%w: clients %d: want 0..%d", ErrOptions, o.Clients, MaxClients)
	}
	if o.SourceIPs && o.Clients == 0 {
		return o, fmt.Errorf("%w: SourceIPs needs Clients > 0", ErrOptions)
	}
	targets := []string{o.URL}
	if o.SlowURL != "" {
		targets = append(targets, o.SlowURL)
	}
	for _, t := range targets {
		if err := checkTarget(t); err != nil {
			return o, err
		}
		if o.SourceIPs {
			// Checked by checkTarget: the URL parses and its host is loopback.
			u, _ := url.Parse(t)
			if ip := net.ParseIP(u.Hostname()); ip != nil && ip.To4() == nil {
				return o, fmt.Errorf("%w: url %q: SourceIPs dials from 127.0.x.y, so the target must be IPv4", ErrOptions, t)
			}
		}
	}
	return o, nil
}

// sourceIP is the loopback address client n (1-based) dials from with SourceIPs.
func sourceIP(n int) net.IP {
	return net.IPv4(127, 0, byte(1+(n-1)/254), byte(1+(n-1)%254))
}

// checkTarget accepts only http(s) URLs whose host is literally loopback; it
// resolves nothing, and the dialer checks the resolved address again.
func checkTarget(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: url %q: %v", ErrOptions, raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: url %q: want http:// or https://", ErrOptions, raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: url %q has no host", ErrOptions, raw)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q (load goes only to 127.0.0.0/8, ::1 or localhost)", ErrNotLoopback, host)
}

// dialLoopbackOnly refuses to connect anywhere but loopback, whatever a name resolved to.
func dialLoopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s %s", ErrNotLoopback, network, address)
	}
	return nil
}

type runner struct {
	opts Options
	// clients are the simulated clients (Options.Clients), or one shared
	// client numbered 0 without cookies or X-Client header.
	clients []*client
	next    int // index in clients of the next request's client; used by run's loop only
	body    []byte

	sent, ok, failed, dropped    atomic.Int64
	slowSent, slowOK, slowFailed atomic.Int64

	mu       sync.Mutex
	versions map[string]int64
	servers  map[string]int64
	lastSeen map[string]time.Time // latest start of an OK request, per version
	errs     tally
	failures []Failure
}

// client sends requests with its own transport and, when simulated
// (n > 0), its own cookie jar, source address and X-Client header.
type client struct {
	n      int
	http   *http.Client
	jar    *cookiejar.Jar // nil for the shared client
	source string         // SourceIP

	// Guarded by runner.mu.
	sent, ok, failed int64
	servers          map[string]int64
	switches         int64
	lastServer       string
	lastStart        time.Time // start of the request lastServer came from
}

func newRunner(opts Options) *runner {
	r := &runner{
		opts:     opts,
		body:     []byte("haroll loadgen\n"),
		versions: map[string]int64{},
		servers:  map[string]int64{},
		lastSeen: map[string]time.Time{},
	}
	if opts.Clients == 0 {
		r.clients = []*client{newClient(opts, 0)}
		return r
	}
	for n := 1; n <= opts.Clients; n++ {
		r.clients = append(r.clients, newClient(opts, n))
	}
	return r
}

func newClient(opts Options, n int) *client {
	c := &client{n: n, servers: map[string]int64{}}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: dialLoopbackOnly}
	dial := dialer.DialContext
	if n > 0 && opts.SourceIPs {
		ip := sourceIP(n)
		c.source = ip.String()
		dialer.LocalAddr = &net.TCPAddr{IP: ip}
		dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			if network == "tcp" {
				network = "tcp4" // "localhost" must not resolve to ::1 with an IPv4 source
			}
			return dialer.DialContext(ctx, network, address)
		}
	}
	tr := &http.Transport{
		Proxy:               nil, // never send load through a proxy named in the environment
		DialContext:         dial,
		MaxIdleConnsPerHost: opts.Workers + 16, // room for the slow requests' connections too
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c.http = &http.Client{
		Transport: tr,
		// A redirect is a failure to report, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if n > 0 {
		// Without a public suffix list the jar still keeps host-only cookies,
		// which is what HAProxy sets.
		c.jar, _ = cookiejar.New(nil) // never fails with nil options
		c.http.Jar = c.jar
	}
	return c
}

// nextClient returns the client of the next request; only run's loop calls it.
func (r *runner) nextClient() *client {
	c := r.clients[r.next]
	r.next = (r.next + 1) % len(r.clients)
	return c
}

func (r *runner) run(ctx context.Context) Result {
	defer func() {
		for _, c := range r.clients {
			c.http.CloseIdleConnections()
		}
	}()

	// The backlog lets a short stall of the workers catch up without loss;
	// past it, requests are dropped and counted.
	jobs := make(chan *client, r.opts.Workers)
	var workers, slow sync.WaitGroup
	for range r.opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for c := range jobs {
				r.do(c, r.opts.URL, false)
			}
		}()
	}

	startSlow := func() {
		c := r.nextClient()
		slow.Add(1)
		go func() {
			defer slow.Done()
			r.do(c, r.opts.SlowURL, true)
		}()
	}
	var slowC <-chan time.Time
	if r.opts.SlowURL != "" && r.opts.SlowEvery > 0 {
		t := time.NewTicker(r.opts.SlowEvery)
		defer t.Stop()
		slowC = t.C
		startSlow()
	}

	interval := max(time.Second/time.Duration(r.opts.Rate), time.Millisecond)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	var scheduled int64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-slowC:
			startSlow()
		case now := <-tick.C:
			// Schedule by elapsed time, so a late tick catches up instead of
			// lowering the rate.
			due := int64(now.Sub(start).Seconds() * float64(r.opts.Rate))
			for ; scheduled < due; scheduled++ {
				select {
				case jobs <- r.clients[r.next]:
					r.nextClient()
				default:
					r.dropped.Add(1)
				}
			}
		}
	}
	end := time.Now()
	close(jobs)
	workers.Wait()
	slow.Wait()
	return r.result(end.Sub(start), end)
}

// outcome is what became of one request.
type outcome struct {
	slow    bool
	started time.Time
	ok      bool
	status  int    // HTTP status of a failed request, 0 without a response read in full
	desc    string // failure description as counted in Errors
	body    string // first line of a non-200 response's body
	version string // X-Version
	server  string // X-Server
}

// do sends one request as client c. Its context is not the run's: a run that
// ends waits for requests in flight instead of cancelling them into failures.
func (r *runner) do(c *client, target string, slow bool) {
	o := outcome{slow: slow, started: time.Now()}
	if slow {
		r.slowSent.Add(1)
	} else {
		r.sent.Add(1)
	}
	r.send(c, target, &o)
	r.record(c, o)
}

func (r *runner) send(c *client, target string, o *outcome) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(r.body))
	if err != nil {
		o.desc = err.Error()
		return
	}
	// Without GetBody the Transport cannot re-send the request on another
	// connection, so a broken keep-alive connection shows up as a failure.
	req.GetBody = nil
	req.Header.Set("Content-Type", "text/plain")
	if c.n > 0 {
		req.Header.Set("X-Client", strconv.Itoa(c.n))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		o.desc = describe(err, r.opts.Timeout)
		return
	}
	o.version = resp.Header.Get("X-Version")
	o.server = resp.Header.Get("X-Server")
	var readErr error
	if resp.StatusCode != http.StatusOK {
		var head []byte
		head, readErr = io.ReadAll(io.LimitReader(resp.Body, 4*maxBodyLine))
		o.body = firstLine(head)
	}
	if readErr == nil {
		_, readErr = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		o.status, o.desc = resp.StatusCode, resp.Status
	case readErr != nil:
		o.desc = "reading body: " + describe(readErr, r.opts.Timeout)
	default:
		o.ok = true
	}
}

// firstLine is b up to its first newline, trimmed, at most maxBodyLine bytes of valid UTF-8.
func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSpace(b)
	if len(b) > maxBodyLine {
		b = b[:maxBodyLine]
	}
	return strings.ToValidUTF8(string(b), "")
}

func (r *runner) record(c *client, o outcome) {
	elapsed := time.Since(o.started)
	switch {
	case !o.ok && o.slow:
		r.slowFailed.Add(1)
	case !o.ok:
		r.failed.Add(1)
	case o.slow:
		r.slowOK.Add(1)
	default:
		r.ok.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c.sent++
	if !o.ok {
		c.failed++
		desc := o.desc
		if o.slow {
			desc = "slow: " + desc
		}
		r.errs.add(desc)
		if len(r.failures) < maxFailures {
			r.failures = append(r.failures, Failure{
				Start: o.started, Elapsed: elapsed, Client: c.n, Slow: o.slow,
				Status: o.status, Desc: o.desc, Body: o.body, Server: o.server,
			})
		}
		return
	}
	c.ok++
	if o.slow {
		return
	}
	version := o.version
	if version == "" {
		version = NoVersion
	}
	r.versions[version]++
	if o.started.After(r.lastSeen[version]) {
		r.lastSeen[version] = o.started
	}
	server := o.server
	if server == "" {
		server = NoServer
	}
	r.servers[server]++
	c.servers[server]++
	if o.server != "" && o.started.After(c.lastStart) {
		if c.lastServer != "" && c.lastServer != o.server {
			c.switches++
		}
		c.lastServer, c.lastStart = o.server, o.started
	}
}

func (r *runner) result(d time.Duration, end time.Time) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{
		Sent: r.sent.Load(), OK: r.ok.Load(), Failed: r.failed.Load(), Dropped: r.dropped.Load(),
		SlowSent: r.slowSent.Load(), SlowOK: r.slowOK.Load(), SlowFailed: r.slowFailed.Load(),
		ByVersion: maps.Clone(r.versions),
		Servers:   maps.Clone(r.servers),
		Errors:    r.errs.list(),
		Failures:  slices.Clone(r.failures),
		Duration:  d,
	}
	for v, at := range r.lastSeen {
		if !at.Before(end.Add(-lastWindow)) {
			res.LastVersions = append(res.LastVersions, v)
		}
	}
	sort.Strings(res.LastVersions)
	if r.opts.Clients == 0 {
		return res
	}
	u, _ := url.Parse(r.opts.URL) // checked by withDefaults
	for _, c := range r.clients {
		var cookies []string
		for _, ck := range c.jar.Cookies(u) {
			cookies = append(cookies, ck.Name+"="+ck.Value)
		}
		res.Clients = append(res.Clients, ClientStats{
			N: c.n, SourceIP: c.source, Sent: c.sent, OK: c.ok, Failed: c.failed,
			Servers: maps.Clone(c.servers), Switches: c.switches, LastServer: c.lastServer,
			Cookies: strings.Join(cookies, "; "),
		})
		res.Switches += c.switches
	}
	return res
}

var addrPattern = regexp.MustCompile(`(\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):\d+`)

// describe turns a transport error into a description that is the same for
// every request failing the same way (no ports, no URL), so they can be counted.
func describe(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("timeout after %s", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		s := oe.Err.Error()
		if !strings.HasPrefix(s, oe.Op) {
			s = oe.Op + ": " + s
		}
		return addrPattern.ReplaceAllString(s, "ADDR")
	}
	return addrPattern.ReplaceAllString(err.Error(), "ADDR")
}

// tally counts failures by description, keeping the first maxErrors distinct ones.
type tally struct {
	order  []string
	counts map[string]int64
	other  int64
}

func (t *tally) add(desc string) {
	if t.counts == nil {
		t.counts = map[string]int64{}
	}
	if _, ok := t.counts[desc]; !ok && len(t.order) >= maxErrors {
		t.other++
		return
	}
	if t.counts[desc] == 0 {
		t.order = append(t.order, desc)
	}
	t.counts[desc]++
}

func (t *tally) list() []string {
	out := make([]string, 0, len(t.order)+1)
	for _, d := range t.order {
		out = append(out, fmt.Sprintf("%s x%d", d, t.counts[d]))
	}
	if t.other > 0 {
		out = append(out, fmt.Sprintf("other failures x%d", t.other))
	}
	return out
}
