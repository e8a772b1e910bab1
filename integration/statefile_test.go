package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/runtime"
)

// stateRow is one server's line of `show servers state`, by column name.
type stateRow map[string]string

// serversState parses `show servers state` into backend/server -> row.
func serversState(t *testing.T, text string) map[string]stateRow {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		t.Fatalf("not a servers state dump: %q", text)
	}
	header := strings.Fields(strings.TrimPrefix(lines[1], "# "))
	out := map[string]stateRow{}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) < len(header) {
			t.Fatalf("short line %q for header %q", l, header)
		}
		r := stateRow{}
		for i, h := range header {
			r[h] = f[i]
		}
		out[r["be_name"]+"/"+r["srv_name"]] = r
	}
	return out
}

func (r stateRow) admin(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(r["srv_admin_state"])
	if err != nil {
		t.Fatalf("srv_admin_state %q", r["srv_admin_state"])
	}
	return n
}

// What a reload makes of the runtime changes a blue/green pair relies on,
// once `show servers state` is in the server-state-file HAProxy loads: the
// facts haroll's pair slots are built on (agent/statefile.go), checked on
// the HAProxy this run uses (HAPROXY_BIN: 2.6 and 3.0 in CI).
//
//   - admin state: a server declared `disabled` and enabled at runtime stays
//     enabled, one disabled at runtime stays in MAINT;
//   - weight: the runtime weight is kept (while haproxy.cfg's weight is the
//     one the file was written under);
//   - address: for a server written with an IP in haproxy.cfg, HAProxy keeps
//     that IP and takes only the port of the file; for one written with a
//     host name (init-addr last first, the default last,libc), it takes
//     the IP and port of the file; with init-addr libc first it resolves
//     the name again (IP from libc) and still takes the port of the file.
func TestAReloadRestoresTheServersStateFromTheStateFile(t *testing.T) {
	requireDeps(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ports := make([]int, 5)
	for i := range ports {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	dir := t.TempDir()
	h, err := harness.StartHAProxy(ctx, harness.HAProxyConfig{Dir: dir, Frontend: ports[0], Inter: 10 * time.Second,
		Servers: []harness.Server{
			{Name: "ip", Addr: fmt.Sprintf("127.0.0.1:%d", ports[1]), Weight: 10},
			{Name: "ipb", Addr: fmt.Sprintf("127.0.0.1:%d", ports[2]), Weight: 20, Options: "disabled"},
			{Name: "host", Addr: fmt.Sprintf("localhost:%d", ports[3]), Weight: 30},
			{Name: "libc", Addr: fmt.Sprintf("localhost:%d", ports[4]), Weight: 40, Options: "init-addr libc,last"},
		},
		Extra: "load-server-state-from-file global"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	c, err := runtime.New(h.Socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(cmd string) {
		t.Helper()
		out, err := h.Exec(cmd)
		if err != nil || strings.TrimSpace(out) != "" && !strings.Contains(out, "changed") {
			t.Fatalf("%s: %q, %v", cmd, out, err)
		}
	}
	exec("enable server app/ipb")
	exec("disable server app/ip")
	for name, w := range map[string]int{"ip": 5, "ipb": 15, "host": 25, "libc": 35} {
		exec(fmt.Sprintf("set weight app/%s %d", name, w))
	}
	exec("set server app/ipb addr 127.0.0.2 port 40002")
	exec("set server app/host addr 127.0.0.3 port 40003")
	exec("set server app/libc addr 127.0.0.4 port 40004")

	dump, err := c.ServersState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before the reload:\n%s", dump)
	if a, err := c.Admin(ctx, "app", "ipb"); err != nil || a.State != runtime.StateReady {
		t.Errorf("Admin(app/ipb) after `enable server` of a `disabled` server = %+v, %v; want ready", a, err)
	}
	stateFile := filepath.Join(dir, "server-state")
	if err := os.WriteFile(stateFile, []byte(dump), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	withState := strings.Replace(string(cfg), "\nglobal\n", "\nglobal\n    server-state-file "+stateFile+"\n", 1)
	if withState == string(cfg) {
		t.Fatalf("no global section in\n%s", cfg)
	}
	if err := os.WriteFile(h.ConfigPath, []byte(withState), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := c.ServersState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the reload:\n%s", after)
	got := serversState(t, after)

	// Admin states. ipb was `disabled` in haproxy.cfg: enabled at runtime, it
	// keeps only the configuration's flag (CMAINT, 0x04), which is not
	// maintenance (SRV_ADMF_MAINT is 0x23).
	if adm := got["app/ip"].admin(t); adm&0x01 == 0 {
		t.Errorf("app/ip: srv_admin_state %d after the reload, want forced maintenance (0x01) kept", adm)
	}
	if adm := got["app/ipb"].admin(t); adm&0x23 != 0 {
		t.Errorf("app/ipb: srv_admin_state %d after the reload, want no maintenance flag", adm)
	}
	for _, srv := range []struct {
		name string
		want runtime.State
	}{{"ip", runtime.StateMaint}, {"ipb", runtime.StateReady}, {"host", runtime.StateReady}} {
		if a, err := c.Admin(ctx, "app", srv.name); err != nil || a.State != srv.want {
			t.Errorf("Admin(app/%s) after the reload = %+v, %v; want %s", srv.name, a, err, srv.want)
		}
	}
	// Weights, all kept.
	for name, w := range map[string]string{"ip": "5", "ipb": "15", "host": "25", "libc": "35"} {
		if got["app/"+name]["srv_uweight"] != w {
			t.Errorf("app/%s: weight %s after the reload, want %s", name, got["app/"+name]["srv_uweight"], w)
		}
	}
	// Addresses.
	for name, want := range map[string]string{
		"ipb":  "127.0.0.1:40002", // the IP of haproxy.cfg, the port of the file
		"host": "127.0.0.3:40003", // both of the file
		"libc": "127.0.0.1:40004", // the IP of libc (localhost), the port of the file
	} {
		r := got["app/"+name]
		if a := r["srv_addr"] + ":" + r["srv_port"]; a != want {
			t.Errorf("app/%s: address %s after the reload, want %s", name, a, want)
		}
	}
}
