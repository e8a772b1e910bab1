package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// fakeExecDaemon answers the four calls of WaitHealthy's own healthcheck runs: inspect of one
// booting container, exec create, exec start, exec inspect. run says, for the n-th exec (from 0)
// inspected for the i-th time, what its inspect answers.
type fakeExecDaemon struct {
	t   *testing.T
	run func(n, i int) execAnswer

	mu        sync.Mutex
	startedAt func(inspects int) string // the container's StartedAt at its i-th inspect
	inspects  int
	execs     int         // created
	seen      map[int]int // exec -> inspects
	running   map[int]bool
	overlap   bool // an exec was created while another still ran
}

type execAnswer struct {
	Running  bool
	ExitCode *int
	Pid      int
}

func code(c int) *int { return &c }

func (d *fakeExecDaemon) client(t *testing.T) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(srv.Close)
	api, err := client.NewClientWithOpts(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	return &Client{api: api, timeout: 5 * time.Second}
}

func (d *fakeExecDaemon) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen, d.running = map[int]int{}, map[int]bool{}
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1.41")
	var n int
	switch {
	case r.Method == http.MethodGet && path == "/containers/web/json":
		started := "2026-12-03T08:00:00Z"
		if d.startedAt != nil {
			started = d.startedAt(d.inspects)
		}
		d.inspects++
		fmt.Fprintf(w, `{"Id":"web","State":{"Status":"running","Running":true,"StartedAt":%q,"Health":{"Status":"starting"}},`+
			`"Config":{"Healthcheck":{"Test":["CMD","/app","-check"],"Interval":3600000000000,"Timeout":100000000}}}`, started)
	case r.Method == http.MethodPost && path == "/containers/web/exec":
		for _, on := range d.running {
			d.overlap = d.overlap || on
		}
		fmt.Fprintf(w, `{"Id":"e%d"}`, d.execs)
		d.execs++
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/start"):
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet && sscan(path, "/exec/e%d/json", &n):
		a := d.run(n, d.seen[n])
		d.seen[n]++
		d.running[n] = a.Running
		_ = json.NewEncoder(w).Encode(map[string]any{"ID": fmt.Sprintf("e%d", n), "Running": a.Running, "ExitCode": a.ExitCode, "Pid": a.Pid})
	default:
		d.t.Errorf("unexpected call %s %s", r.Method, r.URL.Path)
		http.Error(w, "unexpected", http.StatusNotImplemented)
	}
}

func sscan(s, format string, n *int) bool {
	_, err := fmt.Sscanf(s, format, n)
	return err == nil
}

func TestAnExecWhoseExitCodeIsNotSetYetIsNoPass(t *testing.T) {
	// Docker sends a null exit code until the run has ended; the SDK reads
	// it as 0.
	for _, tc := range []struct {
		name string
		run  func(n, i int) execAnswer
		how  string
	}{
		{"never ran (no pid)", func(n, i int) execAnswer { return execAnswer{} }, "never ran"},
		{"a read between the end and its exit code", func(n, i int) execAnswer {
			if i == 0 {
				return execAnswer{Pid: 42}
			}
			return execAnswer{Pid: 42, ExitCode: code(1)}
		}, "exit code 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeExecDaemon{t: t, run: tc.run}
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			err := d.client(t).WaitHealthy(ctx, "web", 20*time.Millisecond)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "haroll's last run of the healthcheck: "+tc.how) {
				t.Fatalf("WaitHealthy: got %v, want the deadline after runs that say %q", err, tc.how)
			}
		})
	}
}

func TestARunThatOutlastsItsTimeoutFailsAndIsWaitedForBeforeTheNext(t *testing.T) {
	// The check's timeout is 100ms; the first run goes on for 10 inspects
	// (~250ms), then exits 0 too late; the second passes at once.
	d := &fakeExecDaemon{t: t, run: func(n, i int) execAnswer {
		if n == 0 && i < 10 {
			return execAnswer{Running: true, Pid: 42}
		}
		return execAnswer{Pid: 42 + n, ExitCode: code(0)}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.client(t).WaitHealthy(ctx, "web", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.execs != 2 || d.overlap {
		t.Fatalf("%d runs, overlapping %v; want the late one failed and waited for, then one more", d.execs, d.overlap)
	}
}

func TestAPassInAContainerThatRestartedMeanwhileIsErrExited(t *testing.T) {
	d := &fakeExecDaemon{t: t,
		run: func(n, i int) execAnswer { return execAnswer{Pid: 42, ExitCode: code(0)} },
		startedAt: func(inspects int) string {
			if inspects == 0 {
				return "2026-12-03T08:00:00Z"
			}
			return "2026-12-03T08:00:01Z"
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := d.client(t).WaitHealthy(ctx, "web", 20*time.Millisecond)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "restarted") {
		t.Fatalf("WaitHealthy: got %v, want ErrExited for a restart", err)
	}
}
