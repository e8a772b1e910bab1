package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/haroll/haroll/runtime"
)

func TestPairSaysWhereHAProxyLoadsTheBackendsServerStatesFrom(t *testing.T) {
	const servers = `
    server web1  127.0.0.1:18081 check weight 7
    server web1b 127.0.0.1:18181 check weight 7 disabled
`
	for _, tc := range []struct {
		name, cfg string
		file, why string // want; why: a part of Why
	}{
		{name: "global file, loaded by the defaults", cfg: `
global
    server-state-file /var/lib/haproxy/server-state
defaults
    load-server-state-from-file global
backend app` + servers, file: "/var/lib/haproxy/server-state"},
		{name: "loaded by the backend itself", cfg: `
global
    server-state-file /var/lib/haproxy/server-state
defaults
    mode http
backend app
    load-server-state-from-file global` + servers, file: "/var/lib/haproxy/server-state"},
		{name: "relative to server-state-base", cfg: `
global
    server-state-base /var/lib/haproxy/
    server-state-file state/servers
defaults
    load-server-state-from-file global
backend app` + servers, file: "/var/lib/haproxy/state/servers"},
		{name: "absolute file despite a base", cfg: `
global
    server-state-base /var/lib/haproxy
    server-state-file /run/haproxy/state
backend app
    load-server-state-from-file global` + servers, file: "/run/haproxy/state"},
		{name: "relative without a base", cfg: `
global
    server-state-file server-state
backend app
    load-server-state-from-file global` + servers, why: "relative"},
		{name: "the backend overrides its defaults with none", cfg: `
global
    server-state-file /var/lib/haproxy/server-state
defaults
    load-server-state-from-file global
backend app
    load-server-state-from-file none` + servers, why: "load-server-state-from-file none"},
		{name: "local", cfg: `
global
    server-state-base /var/lib/haproxy
defaults
    load-server-state-from-file local
backend app
    server-state-file-name app` + servers, why: "load-server-state-from-file local is not supported by haroll"},
		{name: "nothing loads it", cfg: `
global
    server-state-file /var/lib/haproxy/server-state
defaults
    mode http
backend app` + servers, why: "no load-server-state-from-file in backend app or its defaults"},
		{name: "no server-state-file", cfg: `
global
    stats socket /run/haproxy/admin.sock level admin
defaults
    load-server-state-from-file global
backend app` + servers, why: "no server-state-file in the global section"},
		// A defaults section without from starts afresh: the first one's
		// setting does not reach the backend.
		{name: "only an earlier defaults loads it", cfg: `
global
    server-state-file /var/lib/haproxy/server-state
defaults
    load-server-state-from-file global
defaults
    mode http
backend app` + servers, why: "no load-server-state-from-file"},
		{name: "named defaults, from", cfg: `
global
    server-state-file /var/lib/haproxy/server-state
defaults pairs
    load-server-state-from-file global
defaults other
    mode http
backend app from pairs` + servers, file: "/var/lib/haproxy/server-state"},
		{name: "defaults from defaults", cfg: `
global
    server-state-file /var/lib/haproxy/server-state
defaults base
    load-server-state-from-file global
defaults web from base
    mode http
backend app` + servers, file: "/var/lib/haproxy/server-state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeCfg(t, t.TempDir(), "haproxy.cfg", tc.cfg)
			p, err := loadHAProxyConfig(path).pair("app")
			if err != nil {
				t.Fatal(err)
			}
			if p.StateFile != tc.file {
				t.Errorf("StateFile %q, want %q (Why %q)", p.StateFile, tc.file, p.Why)
			}
			if tc.why == "" && p.Why != "" || !strings.Contains(p.Why, tc.why) {
				t.Errorf("Why %q, want it to say %q", p.Why, tc.why)
			}
			if len(p.Disabled) != 2 || p.Disabled["web1"] || !p.Disabled["web1b"] {
				t.Errorf("Disabled %v, want web1 false, web1b true", p.Disabled)
			}
		})
	}
}

func TestPairSaysWhichServersAReloadGivesTheAddressOfTheStateFile(t *testing.T) {
	cfg := `
global
    server-state-file /var/lib/haproxy/server-state
defaults
    load-server-state-from-file global
    default-server init-addr libc,last
backend app
    server ip     127.0.0.1:18081 check
    server ip6    [::1]:18082 check
    server ip4at  ipv4@10.0.0.1:80 check
    server name   web1.internal:18083 check init-addr last,libc
    server dflt   web2.internal:18084 check        # the defaults' init-addr: libc first
    server env    ${WEB3}:80 check init-addr last
    server-template web 3 web.internal:80 check  # not read
backend other
    default-server disabled
    server a app-a:80 check init-addr last
    server b app-b:80 check enabled
`
	path := writeCfg(t, t.TempDir(), "haproxy.cfg", cfg)
	p, err := loadHAProxyConfig(path).pair("app")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"ip": false, "ip6": false, "ip4at": false, "name": true, "dflt": false, "env": false}
	if len(p.AddrKept) != len(want) {
		t.Errorf("AddrKept %v, want %v", p.AddrKept, want)
	}
	for name, kept := range want {
		if p.AddrKept[name] != kept {
			t.Errorf("AddrKept[%s] = %v, want %v (%s)", name, p.AddrKept[name], kept, p.AddrWhy[name])
		}
		if why := p.AddrWhy[name]; kept != (why == "") {
			t.Errorf("AddrWhy[%s] = %q with AddrKept %v", name, why, kept)
		}
	}
	if !strings.Contains(p.AddrWhy["ip"], "host name") || !strings.Contains(p.AddrWhy["dflt"], "init-addr libc,last") {
		t.Errorf("AddrWhy %q", p.AddrWhy)
	}
	o, err := loadHAProxyConfig(path).pair("other")
	if err != nil {
		t.Fatal(err)
	}
	if !o.Disabled["a"] || o.Disabled["b"] || !o.AddrKept["a"] || o.AddrKept["b"] {
		t.Errorf("other: Disabled %v, AddrKept %v: want a disabled by default-server, b enabled; a's address kept, not b's (the defaults' init-addr libc,last)", o.Disabled, o.AddrKept)
	}
}

func TestPairNeedsTheConfigurationAndTheBackend(t *testing.T) {
	missing := loadHAProxyConfig(filepath.Join(t.TempDir(), "haproxy.cfg"))
	if _, err := missing.pair("app"); err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "blue/green slot needs haproxy.config") {
		t.Errorf("missing configuration: %v", err)
	}
	path := writeCfg(t, t.TempDir(), "haproxy.cfg", "backend other\n    server s 127.0.0.1:1\n")
	if _, err := loadHAProxyConfig(path).pair("app"); err == nil || !strings.Contains(err.Error(), `no backend "app"`) {
		t.Errorf("no such backend: %v", err)
	}
}

// stateAgent returns an agent over a world with one pair's two servers, and
// the path of a state file in a directory of its own.
func stateAgent(t *testing.T) (*Agent, *world, string) {
	t.Helper()
	w := newWorld(t)
	s := w.addSlot("web1", 7)
	w.addSlot("web1b", 7)
	return newTestAgent(t, w, s), w, filepath.Join(t.TempDir(), "server-state")
}

func TestSaveServerStateWritesTheDumpHAProxyLoads(t *testing.T) {
	a, w, path := stateAgent(t)
	ctx := context.Background()
	if err := a.saveServerState(ctx, path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("a new state file has mode %v, want 0644: HAProxy must read it", fi.Mode().Perm())
	}
	if err := w.SetState(ctx, "app", "srv-web1b", runtime.StateMaint); err != nil {
		t.Fatal(err)
	}
	if err := a.saveServerState(ctx, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := w.ServersState(ctx)
	if !strings.HasPrefix(string(b), "1\n# be_id ") || sortedLines(string(b)) != sortedLines(want) { // the fake's servers come in map order
		t.Fatalf("file:\n%s\nwant:\n%s", b, want)
	}
	for server, adm := range map[string]string{"srv-web1": "0", "srv-web1b": "1"} {
		if f := lineOf(string(b), server); len(f) < 7 || f[6] != adm {
			t.Errorf("%s in the file: %q, want srv_admin_state %s", server, f, adm)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("files left beside it: %v", entries)
	}
}

func TestSaveServerStateKeepsTheModeOfTheFileItReplaces(t *testing.T) {
	a, _, path := stateAgent(t)
	if err := os.WriteFile(path, []byte("1\n# be_id be_name srv_id srv_name\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := a.saveServerState(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the replaced file's 0640", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), " srv-web1 ") {
		t.Errorf("not replaced: %q", b)
	}
}

func sortedLines(s string) string {
	l := strings.Split(s, "\n")
	slices.Sort(l)
	return strings.Join(l, "\n")
}

// lineOf returns the fields of server's line in a servers state dump.
func lineOf(dump, server string) []string {
	for _, l := range strings.Split(dump, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[3] == server {
			return f
		}
	}
	return nil
}

// garbled is an HAProxy whose `show servers state` answers text.
type garbled struct {
	*world
	text string
}

func (g garbled) ServersState(context.Context) (string, error) { return g.text, nil }

func TestSaveServerStateRefusesWhatIsNotAStateFileAndKeepsTheOldOne(t *testing.T) {
	for name, text := range map[string]string{
		"empty":          "",
		"an error":       "Unknown command: 'show servers state'\n",
		"no version":     "# be_id be_name srv_id srv_name\n1 app 1 web1 127.0.0.1 2 0 7 7\n",
		"no header":      "1\n1 app 1 web1 127.0.0.1 2 0 7 7\n",
		"a stat csv":     "# pxname,svname,qcur\napp,web1,0\n",
		"a version only": "1\n",
	} {
		t.Run(name, func(t *testing.T) {
			a, w, path := stateAgent(t)
			old := "1\n# be_id be_name srv_id srv_name\n"
			if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
				t.Fatal(err)
			}
			a.haproxy = garbled{world: w, text: text}
			err := a.saveServerState(context.Background(), path)
			if !errors.Is(err, runtime.ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
			if b, _ := os.ReadFile(path); string(b) != old {
				t.Errorf("the state file was replaced with %q", b)
			}
		})
	}
}

func TestSaveServerStateFailsWhenHAProxyDoesNotAnswer(t *testing.T) {
	a, w, path := stateAgent(t)
	w.setDown(&w.haproxyDown, runtime.ErrUnreachable)
	if err := a.saveServerState(context.Background(), path); !errors.Is(err, runtime.ErrUnreachable) {
		t.Fatalf("error %v, want ErrUnreachable", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a state file was written: %v", err)
	}
}

// HAProxy may run as user haproxy and read the file as such: a file haroll
// (root) replaces keeps its owner.
func TestSaveServerStateKeepsTheOwnerOfTheFileItReplaces(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	a, _, path := stateAgent(t)
	if err := os.WriteFile(path, []byte("1\n# be_id be_name srv_id srv_name\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := a.saveServerState(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Errorf("owner %d:%d mode %v, want 65534:65534 0600", st.Uid, st.Gid, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), " srv-web1 ") {
		t.Errorf("not replaced: %q", b)
	}
}
