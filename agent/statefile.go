package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/haroll/haroll/internal/atomicfile"
	"github.com/haroll/haroll/runtime"
)

// pairConfig is what haproxy.cfg says about the backend of a blue/green
// slot: which servers it declares, which of them `disabled`, and where
// HAProxy loads the servers' states from when it starts or reloads.
type pairConfig struct {
	// StateFile is the absolute path of the file HAProxy loads this
	// backend's server states from at a (re)load: the global
	// `server-state-file` (joined to `server-state-base` when relative),
	// with `load-server-state-from-file global` in the backend or its
	// defaults. "" when HAProxy loads none; Why then says what is missing.
	StateFile string
	Why       string
	// Disabled has every server the backend declares, true when it is
	// declared `disabled`.
	Disabled map[string]bool
	// AddrKept has every server the backend declares, true when a reload
	// takes its address from the state file, as `set server addr` left it.
	// HAProxy 2.6 and 3.0 read the address of the state file only for a
	// server whose address in haproxy.cfg is a host name, resolved at
	// startup by its `init-addr` methods, "last" first (the default is
	// "last,libc"); a server written with an IP gets that IP back at every
	// reload, and only the port of the state file (src/server_state.c
	// srv_state_srv_update keeps srv_addr in srv->lastaddr, which only
	// src/server.c srv_iterate_initaddr applies, and srv_init_addr calls it
	// for servers with a hostname only). AddrWhy says why for the servers
	// whose address is not kept.
	AddrKept map[string]bool
	AddrWhy  map[string]string
}

// pair reads what haproxy.cfg says about backend (see pairConfig). The error
// says the configuration could not be read, or has no such backend.
func (c haproxyConfig) pair(backend string) (pairConfig, error) {
	if c.err != nil {
		// A missing default file only skips the persistence check; a pair
		// cannot go without it: what a reload does to it is written there.
		return pairConfig{}, fmt.Errorf("a blue/green slot needs haproxy.config, the configuration HAProxy runs with (its server-state-file and the backend's servers): %w", c.err)
	}
	i := c.proxy(backend)
	if i < 0 {
		return pairConfig{}, fmt.Errorf("haproxy config %s has no backend %q: set haproxy.config to the configuration HAProxy runs with", c.path, backend)
	}
	be := c.sections[i]
	chain := c.defaultsOf(i)
	p := pairConfig{Disabled: map[string]bool{}, AddrKept: map[string]bool{}, AddrWhy: map[string]string{}}
	p.StateFile, p.Why = c.stateFile(be, chain)
	dflt := be.defaultServer
	for _, d := range chain { // the backend's own default-server first, then its defaults'
		if dflt.disabled == nil {
			dflt.disabled = d.defaultServer.disabled
		}
		if dflt.initAddr == "" {
			dflt.initAddr = d.defaultServer.initAddr
		}
	}
	for _, s := range be.servers {
		disabled := s.disabled
		if disabled == nil {
			disabled = dflt.disabled
		}
		p.Disabled[s.name] = disabled != nil && *disabled
		initAddr := s.initAddr
		if initAddr == "" {
			initAddr = dflt.initAddr
		}
		why := addrNotKept(s.addr, initAddr)
		p.AddrKept[s.name] = why == ""
		if why != "" {
			p.AddrWhy[s.name] = fmt.Sprintf("server %s/%s: %s", backend, s.name, why)
		}
	}
	return p, nil
}

// proxy returns the index of the backend or listen section named name, -1
// when there is none.
func (c haproxyConfig) proxy(name string) int {
	for i, s := range c.sections {
		if (s.kind == "backend" || s.kind == "listen") && s.name == name {
			return i
		}
	}
	return -1
}

// defaultsOf returns the defaults sections the proxy at index i inherits
// from, nearest first: the one it names with `from`, else the last one
// before it, then the one that one names with `from`, and so on. A
// `defaults` section without `from` starts from HAProxy's built-in values,
// not from the defaults before it.
func (c haproxyConfig) defaultsOf(i int) []*cfgSection {
	var chain []*cfgSection
	from := c.sections[i].from
	before := c.sections[:i]
	for len(chain) <= len(c.sections) {
		d := inherited(before, from)
		if d == nil {
			break
		}
		chain = append(chain, d)
		if d.from == "" {
			break
		}
		from = d.from
		before = before[:indexOf(before, d)]
	}
	return chain
}

func indexOf(sections []*cfgSection, s *cfgSection) int {
	for i, x := range sections {
		if x == s {
			return i
		}
	}
	return 0
}

// stateFile says which file HAProxy loads the states of be's servers from
// at a (re)load, or, as why, why none.
func (c haproxyConfig) stateFile(be *cfgSection, chain []*cfgSection) (path, why string) {
	load := be.loadState
	for _, d := range chain {
		if load != "" {
			break
		}
		load = d.loadState
	}
	var file, base string
	for _, s := range c.sections {
		if s.kind == "global" {
			if s.serverStateFile != "" {
				file = s.serverStateFile
			}
			if s.serverStateBase != "" {
				base = s.serverStateBase
			}
		}
	}
	switch load {
	case "global":
	case "local":
		return "", fmt.Sprintf("backend %s: load-server-state-from-file local is not supported by haroll: use `load-server-state-from-file global` with a `server-state-file` in the global section", be.name)
	case "none":
		return "", fmt.Sprintf("backend %s says `load-server-state-from-file none`: set `load-server-state-from-file global` in it or its defaults", be.name)
	case "":
		return "", fmt.Sprintf("no load-server-state-from-file in backend %s or its defaults: add `load-server-state-from-file global` to one of them", be.name)
	default:
		return "", fmt.Sprintf("backend %s: load-server-state-from-file %q is not global, local or none", be.name, load)
	}
	if file == "" {
		return "", fmt.Sprintf("no server-state-file in the global section, which `load-server-state-from-file global` of backend %s reads: add `server-state-file /var/lib/haproxy/server-state` to it", be.name)
	}
	if !filepath.IsAbs(file) && base != "" {
		file = filepath.Join(base, file) // as HAProxy does: base, a slash, the file
	}
	if !filepath.IsAbs(file) {
		return "", fmt.Sprintf("server-state-file %s is relative and there is no absolute server-state-base: HAProxy opens it relative to its working directory, which haroll cannot know: make it absolute", file)
	}
	return filepath.Clean(file), ""
}

// addrNotKept says why a reload does not take the address of a server
// declared at addr with init-addr methods from the state file, "" when it
// does (see pairConfig.AddrKept).
func addrNotKept(addr, initAddr string) string {
	host := addr
	for _, p := range []string{"ipv4@", "ipv6@"} {
		host = strings.TrimPrefix(host, p)
	}
	if strings.Contains(host, "@") || strings.HasPrefix(host, "/") || strings.Contains(host, "$") {
		return fmt.Sprintf("its address %s is not a host name", addr)
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i] // host:port; an IPv6 address without a port has several
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil || host == "" {
		return fmt.Sprintf("its address in haproxy.cfg is the IP %s, which HAProxy keeps at every reload (it takes only the port from the state file): write it as a host name that resolves to it (an /etc/hosts entry) so that a reload takes the address of the state file", host)
	}
	if m := strings.Split(initAddr, ","); initAddr != "" && m[0] != "last" {
		return fmt.Sprintf("its init-addr %s does not try last first, so HAProxy resolves the host name %s at a reload instead of taking the address of the state file: put last first (the default is last,libc)", initAddr, host)
	}
	return ""
}

// saveServerState writes HAProxy's `show servers state` to path, atomically
// (a temporary file in the same directory, fsynced, renamed over it), so
// that a reload at any moment loads the servers' states as they are now:
// which side of each pair is live, its weight and address. A file already
// there keeps its mode and owner (HAProxy, maybe running as another user,
// must read it); a new one is 0644. A reply that does not read as a state
// file (runtime.ErrMalformed) replaces nothing.
//
// Saves are serialised, from the dump to the rename: two at once (one slot's
// retirement beside the next one's surge) could otherwise leave the older
// snapshot on disk.
func (a *Agent) saveServerState(ctx context.Context, path string) error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	text, err := a.haproxy.ServersState(ctx)
	if err != nil {
		return fmt.Errorf("save server state to %s: %w", path, err)
	}
	if err := runtime.CheckServersState(text); err != nil {
		return fmt.Errorf("save server state to %s: %w", path, err)
	}
	if err := writeKeepingOwner(path, []byte(text)); err != nil {
		return fmt.Errorf("save server state to %s: %w", path, err)
	}
	return nil
}

// writeKeepingOwner replaces path with b as atomicfile.Write does (a
// temporary file beside it, synced, renamed over it, the directory synced),
// the temporary file already having the mode and owner of the file it
// replaces, or 0644 when there is none: a reader never sees the content
// with other permissions. The directory must exist: one haroll made would
// not be HAProxy's to read.
func writeKeepingOwner(path string, b []byte) error {
	mode, uid, gid := fs.FileMode(0o644), -1, -1
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return atomicfile.Replace(path, b, func(tmp *os.File) error {
		if err := tmp.Chmod(mode); err != nil { // CreateTemp makes it 0600
			return err
		}
		if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
			return tmp.Chown(uid, gid)
		}
		return nil
	})
}
