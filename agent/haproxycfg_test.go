package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeCfg(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPersistSettingsFindWhatKeepsPinnedClientsOnAServerInMaintenance(t *testing.T) {
	cfg := `
global
    stats socket /run/haproxy/admin.sock level admin
defaults
    mode http
    option persist   # every proxy after this inherits it
backend inherits
    cookie SRV insert indirect nocache
    server s1 127.0.0.1:1 check cookie s1
backend cancels
    no option persist
    server s1 127.0.0.1:1 check
defaults clean
    mode http
backend clean_cookie
    cookie SRV insert indirect nocache
    stick-table type ip size 1m
    stick on src
    server s1 127.0.0.1:1 check cookie s1
backend forced from clean
    force-persist if { src 10.0.0.0/8 }
    server s1 127.0.0.1:1 check
listen own
    option persist
    server s1 127.0.0.1:1 check
`
	path := writeCfg(t, t.TempDir(), "haproxy.cfg", cfg)
	for backend, want := range map[string]string{
		"inherits":     "option persist",
		"cancels":      "",
		"clean_cookie": "",
		"forced":       "force-persist if { src 10.0.0.0/8 }",
		"own":          "option persist",
	} {
		found, err := loadHAProxyConfig(path).persistSettings(backend)
		if err != nil {
			t.Fatalf("%s: %v", backend, err)
		}
		var got []string
		for _, f := range found {
			got = append(got, f.text)
		}
		if strings.Join(got, "; ") != want {
			t.Errorf("%s: found %q, want %q", backend, got, want)
		}
	}
	if _, err := loadHAProxyConfig(path).persistSettings("nope"); err == nil || !strings.Contains(err.Error(), `no backend "nope"`) {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := loadHAProxyConfig(filepath.Join(t.TempDir(), "none.cfg")).persistSettings("x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestPersistSettingsReadADirectoryInNameOrder(t *testing.T) {
	dir := t.TempDir()
	writeCfg(t, dir, "00-defaults.cfg", "defaults\n    option persist\n")
	writeCfg(t, dir, "10-web.cfg", "backend web\n    server s1 127.0.0.1:1 check\n")
	writeCfg(t, dir, "README", "backend web\n    no option persist\n") // not a *.cfg: not read
	found, err := loadHAProxyConfig(dir).persistSettings("web")
	if err != nil || len(found) != 1 || !strings.HasSuffix(found[0].String(), "00-defaults.cfg:2: option persist") {
		t.Fatalf("found %v, %v", found, err)
	}
}

func TestPreflightRefusesABackendWithOptionPersistAndChangesNothing(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.HAProxy.Config = writeCfg(t, t.TempDir(), "haproxy.cfg", "defaults\n  option persist\nbackend app\n  server srv-app-1 127.0.0.1:1 check\n")
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, ErrPreflight) || !errors.Is(err, ErrPersistence) || !strings.Contains(err.Error(), "haproxy.cfg:2: option persist") {
		t.Fatalf("got %v", err)
	}
	if calls := w.mutations(); len(calls) != 0 {
		t.Fatalf("changed %q", calls)
	}
	// A backend that pins with a cookie and a stick table is fine.
	a.cfg.HAProxy.Config = writeCfg(t, t.TempDir(), "haproxy.cfg", "backend app\n  cookie SRV insert indirect nocache\n  stick-table type ip size 1m\n  stick on src\n")
	if _, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAnHAProxyConfigSetButWithoutTheBackendIsAnError(t *testing.T) {
	w := newWorld(t)
	a := newTestAgent(t, w, w.addSlot("app-1", 7))
	a.cfg.HAProxy.Config = writeCfg(t, t.TempDir(), "haproxy.cfg", "backend other\n")
	_, err := a.Redeploy(context.Background(), Request{Image: "app:v2"}, nil)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), `haproxy.config: haproxy config`) || len(w.mutations()) != 0 {
		t.Fatalf("got %v, calls %q", err, w.mutations())
	}
}
