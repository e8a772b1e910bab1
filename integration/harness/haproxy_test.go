//go:build linux

package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/loadgen"
)

// requireHAProxy skips the test when haproxy is missing, unless CI is set: CI must run it.
func requireHAProxy(t *testing.T) {
	t.Helper()
	if _, err := FindHAProxy(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set: %v", err)
		}
		t.Skipf("%v (CI unset, skipping)", err)
	}
}

// startHAProxy starts haproxy in front of the given servers and stops it when the test ends.
func startHAProxy(t *testing.T, servers ...Server) *HAProxy {
	t.Helper()
	requireHAProxy(t)
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h, err := StartHAProxy(ctx, HAProxyConfig{Dir: t.TempDir(), Frontend: port, Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("stop haproxy: %v", err)
		}
	})
	return h
}

// versionApp is an httptest server on 127.0.0.1 answering /health and, elsewhere, X-Version: v1.
func versionApp(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		w.Header().Set("X-Version", "v1")
		fmt.Fprintln(w, "hello")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, port int) *http.Response {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Post(fmt.Sprintf("http://127.0.0.1:%d/", port), "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// alive reports whether pid is a running process; a zombie waiting for its reaper counts as dead.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// gone waits up to 2 s for pid to end: an orphaned worker may take a moment to be reaped.
func gone(pid int) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return true
		}
	}
	return false
}

func TestRenderedConfigHasWhatTheHarnessPromises(t *testing.T) {
	cfg := HAProxyConfig{
		Dir: "/tmp/hx", Frontend: 18080, Inter: 100 * time.Millisecond, Fall: 3,
		Servers: []Server{{Name: "s1", Addr: "127.0.0.1:9001", Weight: 7, Options: "cookie s1"}, {Name: "s2", Addr: "127.0.0.1:9002"}},
		Extra:   "cookie SRV insert indirect nocache\n",
	}
	got, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"    stats socket /tmp/hx/admin.sock mode 600 level admin expose-fd listeners",
		"    stats timeout 2m",
		"    noreuseport",
		"    mode http",
		"    timeout connect 2s",
		"    timeout client 30s",
		"    timeout server 30s",
		"    timeout queue 10s",
		"    option redispatch",
		"    retries 3",
		"    option http-keep-alive",
		"    bind 127.0.0.1:18080",
		"    default_backend app",
		"backend app",
		"    balance roundrobin",
		"    option httpchk GET /health",
		"    http-check expect status 200",
		"    default-server inter 100ms fastinter 100ms downinter 100ms rise 2 fall 3",
		"    server s1 127.0.0.1:9001 check weight 7 cookie s1",
		"    server s2 127.0.0.1:9002 check",
		"    cookie SRV insert indirect nocache",
	} {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("config lacks %q:\n%s", line, got)
		}
	}
	for _, bad := range []string{"user ", "group ", "chroot", "daemon"} {
		if strings.Contains(got, bad) {
			t.Errorf("config has %q:\n%s", bad, got)
		}
	}

	// The real binary, when present, must accept it.
	if bin, err := FindHAProxy(); err == nil {
		path := t.TempDir() + "/haproxy.cfg"
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c: %v\n%s", err, out)
		}
	}
}

func TestRejectsConfigsThatCannotBeRendered(t *testing.T) {
	for name, cfg := range map[string]HAProxyConfig{
		"no dir":               {Frontend: 1},
		"no port":              {Dir: "/tmp/x"},
		"space in backend":     {Dir: "/tmp/x", Frontend: 1, Backend: "a b"},
		"semicolon in name":    {Dir: "/tmp/x", Frontend: 1, Servers: []Server{{Name: "s;1", Addr: "127.0.0.1:1"}}},
		"duplicate server":     {Dir: "/tmp/x", Frontend: 1, Servers: []Server{{Name: "s", Addr: "127.0.0.1:1"}, {Name: "s", Addr: "127.0.0.1:2"}}},
		"address without port": {Dir: "/tmp/x", Frontend: 1, Servers: []Server{{Name: "s", Addr: "127.0.0.1"}}},
		"newline in options":   {Dir: "/tmp/x", Frontend: 1, Servers: []Server{{Name: "s", Addr: "127.0.0.1:1", Options: "x\ny"}}},
	} {
		if _, err := cfg.Render(); !errors.Is(err, ErrHAProxyConfig) {
			t.Errorf("%s: Render() error %v, want ErrHAProxyConfig", name, err)
		}
	}
}

func TestHAProxyServesThroughItsFrontendAndStops(t *testing.T) {
	app := versionApp(t)
	h := startHAProxy(t, Server{Name: "s1", Addr: app.Listener.Addr().String(), Weight: 5})

	resp := post(t, h.Frontend)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Version") != "v1" {
		t.Fatalf("through haproxy: %s, X-Version %q", resp.Status, resp.Header.Get("X-Version"))
	}

	stat, err := h.Exec("show stat app 4 -1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stat, "# pxname,svname,") || !strings.Contains(stat, "\napp,s1,") {
		t.Fatalf("show stat lacks app/s1:\n%s", stat)
	}
	if w, err := h.Exec("get weight app/s1"); err != nil || !strings.HasPrefix(w, "5 (initial 5)") {
		t.Fatalf("get weight: %q, %v", w, err)
	}

	info, err := h.Info()
	if err != nil {
		t.Fatal(err)
	}
	var worker int
	fmt.Sscan(info["Pid"], &worker)
	master := h.Cmd.Process.Pid
	if worker == 0 || worker == master {
		t.Fatalf("show info Pid %q, master %d", info["Pid"], master)
	}

	if err := h.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !gone(master) || !gone(worker) {
		t.Fatalf("after Stop: master %d alive %v, worker %d alive %v", master, alive(master), worker, alive(worker))
	}
	if _, err := h.Exec("show info"); err == nil {
		t.Fatal("the socket still answers after Stop")
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", h.Frontend), time.Second); err == nil {
		conn.Close()
		t.Fatal("the frontend still accepts after Stop")
	}
}

func TestStartFailsLoudlyWhenTheFrontendPortIsTaken(t *testing.T) {
	requireHAProxy(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	h, err := StartHAProxy(context.Background(), HAProxyConfig{Dir: t.TempDir(), Frontend: port})
	if err == nil {
		h.Stop()
		t.Fatal("haproxy started on a taken port")
	}
	if !errors.Is(err, ErrHAProxyExited) || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("error %v, want ErrHAProxyExited with haproxy's reason", err)
	}
}

func TestReloadStartsANewWorkerThatStillServes(t *testing.T) {
	app := versionApp(t)
	h := startHAProxy(t, Server{Name: "s1", Addr: app.Listener.Addr().String()})
	before, err := h.Info()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Exec("set weight app/s1 0"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := h.Info()
	if err != nil {
		t.Fatal(err)
	}
	if after["Pid"] == before["Pid"] {
		t.Fatalf("worker pid %s unchanged by reload", after["Pid"])
	}
	// A reload reverts runtime changes: the design relies on detecting this.
	if w, err := h.Exec("get weight app/s1"); err != nil || !strings.HasPrefix(w, "1 (initial 1)") {
		t.Fatalf("get weight after reload: %q, %v", w, err)
	}
	if resp := post(t, h.Frontend); resp.StatusCode != http.StatusOK {
		t.Fatalf("after reload: %s", resp.Status)
	}
	if procs, err := h.ExecMaster("show proc"); err != nil || !strings.Contains(procs, after["Pid"]+" ") {
		t.Fatalf("master show proc lacks worker %s: %q, %v", after["Pid"], procs, err)
	}
}

func TestLongDirsGetAShortSocketPath(t *testing.T) {
	requireHAProxy(t)
	dir := t.TempDir() + "/" + strings.Repeat("d", 120)
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	h, err := StartHAProxy(context.Background(), HAProxyConfig{Dir: dir, Frontend: port})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if len(h.Socket) > maxSocketLen {
		t.Fatalf("socket path %d bytes long", len(h.Socket))
	}
	if _, err := h.Info(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadThroughHAProxyLosesNothingWhileAServerIsDrained(t *testing.T) {
	app := func(version string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Version", version)
			if r.URL.Path == "/slow" {
				time.Sleep(300 * time.Millisecond)
			}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	v1, v2 := app("v1"), app("v2")
	h := startHAProxy(t,
		Server{Name: "s1", Addr: v1.Listener.Addr().String()},
		Server{Name: "s2", Addr: v2.Listener.Addr().String()})
	url := fmt.Sprintf("http://127.0.0.1:%d/", h.Frontend)

	stop := loadgen.Start(context.Background(), loadgen.Options{URL: url, Rate: 300, SlowURL: url + "slow", SlowEvery: 100 * time.Millisecond})
	time.Sleep(700 * time.Millisecond)
	if reply, err := h.Exec("set weight app/s1 0"); err != nil || strings.TrimSpace(reply) != "" {
		t.Fatalf("set weight: %q, %v", reply, err)
	}
	time.Sleep(1500 * time.Millisecond)
	res := stop()
	t.Logf("%s", res)

	if err := res.Check(); err != nil {
		t.Fatal(err)
	}
	if res.ByVersion["v1"] == 0 || strings.Join(res.LastVersions, ",") != "v2" {
		t.Fatalf("versions %v, last %v: want v1 before the drain and only v2 at the end", res.ByVersion, res.LastVersions)
	}
}
