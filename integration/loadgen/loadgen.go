package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
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

const (
	maxErrors  = 20          // distinct failure descriptions kept in Result.Errors
	lastWindow = time.Second // how far back Result.LastVersions looks
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
	// Err is set when the run could not start (ErrOptions, ErrNotLoopback);
	// nothing was sent then.
	Err error
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
// (slow: 4 sent, 4 ok, 0 failed), versions v1=3000 v2=3000, last v2, in 30s".
func (r Result) String() string {
	if r.Err != nil {
		return "loadgen: " + r.Err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, ok %d, failed %d, dropped %d (slow: %d sent, %d ok, %d failed), versions",
		r.Sent, r.OK, r.Failed, r.Dropped, r.SlowSent, r.SlowOK, r.SlowFailed)
	names := make([]string, 0, len(r.ByVersion))
	for v := range r.ByVersion {
		names = append(names, v)
	}
	sort.Strings(names)
	if len(names) == 0 {
		b.WriteString(" none")
	}
	for _, v := range names {
		fmt.Fprintf(&b, " %s=%d", v, r.ByVersion[v])
	}
	if len(r.LastVersions) > 0 {
		fmt.Fprintf(&b, ", last %s", strings.Join(r.LastVersions, " "))
	}
	fmt.Fprintf(&b, ", in %s", r.Duration.Round(10*time.Millisecond))
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "; errors: %s", strings.Join(r.Errors, ", "))
	}
	return b.String()
}

// Run sends requests until ctx is done, then waits for the in-flight ones
// (each bounded by Options.Timeout) and returns what it counted. Bad options
// or a non-loopback target give a Result with Err set and nothing sent.
func Run(ctx context.Context, opts Options) Result {
	opts, err := opts.withDefaults()
	if err != nil {
		return Result{Err: err, Errors: []string{err.Error()}, ByVersion: map[string]int64{}}
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
	if err := checkTarget(o.URL); err != nil {
		return o, err
	}
	if o.SlowURL != "" {
		if err := checkTarget(o.SlowURL); err != nil {
			return o, err
		}
	}
	return o, nil
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
	opts   Options
	client *http.Client
	body   []byte

	sent, ok, failed, dropped    atomic.Int64
	slowSent, slowOK, slowFailed atomic.Int64

	mu       sync.Mutex
	versions map[string]int64
	lastSeen map[string]time.Time // latest start of an OK request, per version
	errs     tally
}

func newRunner(opts Options) *runner {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: dialLoopbackOnly}
	tr := &http.Transport{
		Proxy:               nil, // never send load through a proxy named in the environment
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: opts.Workers + 16, // room for the slow requests' connections too
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &runner{
		opts: opts,
		client: &http.Client{
			Transport: tr,
			// A redirect is a failure to report, not something to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		body:     []byte("haroll loadgen\n"),
		versions: map[string]int64{},
		lastSeen: map[string]time.Time{},
	}
}

func (r *runner) run(ctx context.Context) Result {
	defer r.client.CloseIdleConnections()

	// The backlog lets a short stall of the workers catch up without loss;
	// past it, requests are dropped and counted.
	jobs := make(chan struct{}, r.opts.Workers)
	var workers, slow sync.WaitGroup
	for range r.opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for range jobs {
				r.do(r.opts.URL, false)
			}
		}()
	}

	startSlow := func() {
		slow.Add(1)
		go func() {
			defer slow.Done()
			r.do(r.opts.SlowURL, true)
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
				case jobs <- struct{}{}:
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

// do sends one request. Its context is not the run's: a run that ends waits
// for requests in flight instead of cancelling them into failures.
func (r *runner) do(target string, slow bool) {
	started := time.Now()
	if slow {
		r.slowSent.Add(1)
	} else {
		r.sent.Add(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(r.body))
	if err != nil {
		r.fail(slow, err.Error())
		return
	}
	// Without GetBody the Transport cannot re-send the request on another
	// connection, so a broken keep-alive connection shows up as a failure.
	req.GetBody = nil
	req.Header.Set("Content-Type", "text/plain")
	resp, err := r.client.Do(req)
	if err != nil {
		r.fail(slow, describe(err, r.opts.Timeout))
		return
	}
	_, readErr := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		r.fail(slow, resp.Status)
	case readErr != nil:
		r.fail(slow, "reading body: "+describe(readErr, r.opts.Timeout))
	default:
		r.succeed(slow, resp.Header.Get("X-Version"), started)
	}
}

func (r *runner) fail(slow bool, desc string) {
	if slow {
		r.slowFailed.Add(1)
		desc = "slow: " + desc
	} else {
		r.failed.Add(1)
	}
	r.mu.Lock()
	r.errs.add(desc)
	r.mu.Unlock()
}

func (r *runner) succeed(slow bool, version string, started time.Time) {
	if slow {
		r.slowOK.Add(1)
		return
	}
	r.ok.Add(1)
	if version == "" {
		version = NoVersion
	}
	r.mu.Lock()
	r.versions[version]++
	if started.After(r.lastSeen[version]) {
		r.lastSeen[version] = started
	}
	r.mu.Unlock()
}

func (r *runner) result(d time.Duration, end time.Time) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{
		Sent: r.sent.Load(), OK: r.ok.Load(), Failed: r.failed.Load(), Dropped: r.dropped.Load(),
		SlowSent: r.slowSent.Load(), SlowOK: r.slowOK.Load(), SlowFailed: r.slowFailed.Load(),
		ByVersion: make(map[string]int64, len(r.versions)),
		Errors:    r.errs.list(),
		Duration:  d,
	}
	for v, n := range r.versions {
		res.ByVersion[v] = n
	}
	for v, at := range r.lastSeen {
		if !at.Before(end.Add(-lastWindow)) {
			res.LastVersions = append(res.LastVersions, v)
		}
	}
	sort.Strings(res.LastVersions)
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
