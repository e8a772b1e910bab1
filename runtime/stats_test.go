package runtime

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParseStatReadsServersByHeader(t *testing.T) {
	stats, err := parseStat(recorded(t, "show_stat_app.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 3 {
		t.Fatalf("got %d servers, want 3", len(stats))
	}
	app1 := stats[0]
	want := ServerStat{Backend: "app", Server: "app1", Status: "UP", Weight: 7, CheckStatus: "L7OK",
		CheckHealth: 3, CheckRise: 2, CheckFall: 2, Addr: "127.0.0.1:18555", Checked: true, ID: 1}
	if app1 != want {
		t.Fatalf("app1 = %+v\nwant  %+v", app1, want)
	}
	if !app1.FullyUp() || !app1.Serving() || !app1.Drained() {
		t.Fatalf("app1 should be fully up, serving and drained: %+v", app1)
	}
	if stats[1].Status != "DOWN" || stats[1].Serving() || stats[1].FullyUp() {
		t.Fatalf("app2 should be down and not serving: %+v", stats[1])
	}
	if stats[2].Checked || !stats[2].Serving() || stats[2].FullyUp() {
		t.Fatalf("app3 has no check: serving but never FullyUp: %+v", stats[2])
	}
}

func TestAStaleL7OKAfterHealthDownIsNotUp(t *testing.T) {
	stats, err := parseStat(recorded(t, "show_stat_health_down.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if s := stats[0]; s.CheckStatus != "L7OK" || s.FullyUp() {
		t.Fatalf("after health down the old L7OK stays but the server is not up: %+v", s)
	}
}

func TestDrainStatusCountsAsUpButNotServing(t *testing.T) {
	stats, err := parseStat(recorded(t, "show_stat_drain.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if s := stats[0]; s.Status != "DRAIN" || !s.FullyUp() || s.Serving() {
		t.Fatalf("drained server: %+v", s)
	}
}

func TestParseStatRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "hello", "# pxname,svname\napp,app1", "# pxname,svname,qcur,scur,status,weight,check_status,addr\napp,a,x,0,UP,1,L7OK,1.2.3.4:5"} {
		if _, err := parseStat(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseStat(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

func TestServerOverTheSocketFindsOneServer(t *testing.T) {
	f, c := newFakeUnix(t, func(cmd string) string { return recorded(t, "show_stat_app.csv") })
	s, err := c.Server(context.Background(), "app", "app2")
	if err != nil {
		t.Fatal(err)
	}
	if s.Server != "app2" || s.Weight != 3 {
		t.Fatalf("got %+v", s)
	}
	if got := f.seen(); len(got) != 1 || got[0] != "show stat app 4 -1" {
		t.Fatalf("commands sent: %q", got)
	}
	if _, err := c.Server(context.Background(), "app", "nope"); !errors.Is(err, ErrNoSuchServer) {
		t.Fatalf("unknown server: %v, want ErrNoSuchServer", err)
	}
}

func TestAnUnknownBackendIsErrNoSuchBackend(t *testing.T) {
	_, c := newFakeUnix(t, func(cmd string) string { return recorded(t, "show_stat_no_proxy.txt") })
	if _, err := c.Backend(context.Background(), "nope"); !errors.Is(err, ErrNoSuchBackend) {
		t.Fatalf("got %v, want ErrNoSuchBackend", err)
	}
}

// onlySid keeps the header and the line of server id sid of a recorded
// `show stat`, as `show stat app 4 <sid>` answers.
func onlySid(t *testing.T, sid string) string {
	lines := strings.Split(strings.TrimSpace(recorded(t, "show_stat_app.csv")), "\n")
	out := lines[0] + "\n"
	for _, l := range lines[1:] {
		if strings.Split(l, ",")[28] == sid { // the sid column
			out += l + "\n"
		}
	}
	return out
}

func TestServerAsksForItsOwnLineOnceItsIDIsKnown(t *testing.T) {
	var reload atomic.Bool // after a "reload", sid 2 is app3
	f, c := newFakeUnix(t, func(cmd string) string {
		switch {
		case cmd == "show stat app 4 -1":
			return recorded(t, "show_stat_app.csv")
		case cmd == "show stat app 4 2" && reload.Load():
			return onlySid(t, "3")
		case cmd == "show stat app 4 2":
			return onlySid(t, "2")
		}
		return "unexpected " + cmd
	})
	ctx := context.Background()
	for range 2 {
		if s, err := c.Server(ctx, "app", "app2"); err != nil || s.Server != "app2" || s.Weight != 3 {
			t.Fatalf("got %+v, %v", s, err)
		}
	}
	want := []string{"show stat app 4 -1", "show stat app 4 2"}
	if got := f.seen(); !slices.Equal(got, want) {
		t.Fatalf("commands sent: %q, want %q", got, want)
	}
	reload.Store(true)
	if s, err := c.Server(ctx, "app", "app2"); err != nil || s.Server != "app2" {
		t.Fatalf("after the ids changed: %+v, %v", s, err)
	}
	if got := f.seen(); !slices.Equal(got[2:], []string{"show stat app 4 2", "show stat app 4 -1"}) {
		t.Fatalf("a line naming another server must fall back to the whole backend: %q", got)
	}
}

func TestParseStatReadsTrafficCounters(t *testing.T) {
	out := recorded(t, "show_stat_app.csv")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	header := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	row := strings.Split(lines[1], ",")
	set := func(name, v string) {
		t.Helper()
		i := slices.Index(header, name)
		if i < 0 {
			t.Fatalf("no column %s", name)
		}
		row[i] = v
	}
	for name, v := range map[string]string{"hrsp_1xx": "1", "hrsp_2xx": "900", "hrsp_3xx": "3", "hrsp_4xx": "40",
		"hrsp_5xx": "50", "hrsp_other": "6", "econ": "7", "eresp": "8"} {
		set(name, v)
	}
	lines[1] = strings.Join(row, ",")
	stats, err := parseStat(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Counters{Responses: 1000, Hrsp5xx: 50, Econ: 7, Eresp: 8}
	if got := stats[0].Counters; got != want {
		t.Fatalf("counters = %+v, want %+v", got, want)
	}
	if got := stats[1].Counters; got != (Counters{}) {
		t.Fatalf("app2 has served nothing: %+v", got)
	}
	set("econ", "-1")
	lines[1] = strings.Join(row, ",")
	if _, err := parseStat(strings.Join(lines, "\n")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a negative counter: %v, want ErrMalformed", err)
	}
	set("econ", "0")
	set("hrsp_2xx", "9223372036854775807")
	lines[1] = strings.Join(row, ",")
	if _, err := parseStat(strings.Join(lines, "\n")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("responses that overflow int64: %v, want ErrMalformed", err)
	}
}
