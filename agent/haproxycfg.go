package agent

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// persistSetting is a line of a backend (or the defaults it inherits) that
// makes HAProxy keep sending pinned clients to a server in maintenance, which
// would defeat the drain: the server haroll stops would still be chosen.
type persistSetting struct {
	file string
	line int
	text string
}

func (p persistSetting) String() string { return fmt.Sprintf("%s:%d: %s", p.file, p.line, p.text) }

// sectionKeywords start a section of haproxy.cfg.
var sectionKeywords = []string{"global", "defaults", "frontend", "backend", "listen", "peers",
	"resolvers", "userlist", "program", "mailers", "cache", "ring", "http-errors", "fcgi-app",
	"log-forward", "crt-store", "traces"}

// cfgSection is one section's settings that matter to the drain.
type cfgSection struct {
	kind, name, from string
	persist          *persistSetting // `option persist`
	noPersist        bool            // `no option persist`
	forcePersist     []persistSetting

	// What a blue/green pair needs of a reload (statefile.go).
	serverStateFile, serverStateBase string // global
	loadState                        string // load-server-state-from-file: global, local or none
	servers                          []cfgServer
	defaultServer                    cfgServer // from `default-server` lines: disabled, initAddr
}

// cfgServer is a `server` line, or what `default-server` lines set. The
// `server-template` lines are not read: a pair's two servers must be named in
// haroll's configuration, which a template's numbered names are not meant to
// be, and the template's servers carry no address of their own.
type cfgServer struct {
	name string
	addr string // as written: "127.0.0.1:8080", "app1:8080", "ipv4@10.0.0.1:80"
	// disabled: `disabled` (true) or `enabled` (false) was said; nil when
	// neither was, so the default-server's setting applies.
	disabled *bool
	// initAddr: the `init-addr` methods ("last,libc,none"), "" when not set.
	initAddr string
}

// haproxyConfig is HAProxy's configuration as read once for a preflight:
// its sections, or why they could not be read.
type haproxyConfig struct {
	path     string
	sections []*cfgSection
	err      error
}

// loadHAProxyConfig reads the configuration at path: a file, or a directory
// whose *.cfg files are read in name order. A path that does not exist
// leaves an error wrapping fs.ErrNotExist.
func loadHAProxyConfig(path string) haproxyConfig {
	c := haproxyConfig{path: path}
	files, err := cfgFiles(path)
	if err != nil {
		c.err = err
		return c
	}
	for _, f := range files {
		s, err := readSections(f)
		if err != nil {
			c.err = err
			return c
		}
		c.sections = append(c.sections, s...)
	}
	return c
}

// persistSettings returns the lines that make backend keep pinned clients
// on a server in maintenance: `option persist`, in the backend or the
// defaults it inherits, and every `force-persist` rule of the backend. It
// returns the load's error, or one when backend is not in the configuration.
func (c haproxyConfig) persistSettings(backend string) ([]persistSetting, error) {
	if c.err != nil {
		return nil, c.err
	}
	sections := c.sections
	for i, s := range sections {
		if (s.kind != "backend" && s.kind != "listen") || s.name != backend {
			continue
		}
		out := slices.Clone(s.forcePersist)
		persist := s.persist
		if !s.hasPersistLine() {
			if d := inherited(sections[:i], s.from); d != nil {
				persist = d.persist
			}
		}
		if persist != nil {
			out = append(out, *persist)
		}
		return out, nil
	}
	return nil, fmt.Errorf("haproxy config %s has no backend %q: set haproxy.config to the configuration HAProxy runs with", c.path, backend)
}

// hasPersistLine: the section says `option persist` or `no option persist`
// itself, so nothing is inherited.
func (s *cfgSection) hasPersistLine() bool { return s.persist != nil || s.noPersist }

// inherited is the defaults section a proxy inherits: the one named by
// from, else the last one before it.
func inherited(before []*cfgSection, from string) *cfgSection {
	for i := len(before) - 1; i >= 0; i-- {
		d := before[i]
		if d.kind == "defaults" && (from == "" || d.name == from) {
			return d
		}
	}
	return nil
}

// read takes the settings of a server or default-server line that matter
// to a pair: the last one of each wins, as in HAProxy.
func (s *cfgServer) read(words []string) {
	for i, w := range words {
		switch w {
		case "disabled", "enabled":
			d := w == "disabled"
			s.disabled = &d
		case "init-addr":
			if i+1 < len(words) {
				s.initAddr = words[i+1]
			}
		}
	}
}

func cfgFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.cfg"))
	if err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("haproxy config: no *.cfg file in %s: %w", path, fs.ErrNotExist)
	}
	slices.Sort(files)
	return files, nil
}

func readSections(file string) ([]*cfgSection, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	defer f.Close()
	var (
		out []*cfgSection
		cur *cfgSection
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		if slices.Contains(sectionKeywords, words[0]) {
			cur = &cfgSection{kind: words[0]}
			if len(words) > 1 && words[1] != "from" {
				cur.name = words[1]
			}
			if i := slices.Index(words, "from"); i > 0 && i+1 < len(words) {
				cur.from = words[i+1]
			}
			out = append(out, cur)
			continue
		}
		if cur == nil {
			continue
		}
		setting := persistSetting{file: file, line: n, text: strings.Join(words, " ")}
		switch {
		case len(words) >= 2 && words[0] == "option" && words[1] == "persist":
			cur.persist, cur.noPersist = &setting, false
		case len(words) >= 3 && words[0] == "no" && words[1] == "option" && words[2] == "persist":
			cur.persist, cur.noPersist = nil, true
		case words[0] == "force-persist":
			cur.forcePersist = append(cur.forcePersist, setting)
		case cur.kind == "global" && len(words) >= 2 && words[0] == "server-state-file":
			cur.serverStateFile = words[1]
		case cur.kind == "global" && len(words) >= 2 && words[0] == "server-state-base":
			cur.serverStateBase = words[1]
		case len(words) >= 2 && words[0] == "load-server-state-from-file":
			cur.loadState = words[1]
		case len(words) >= 3 && words[0] == "server":
			srv := cfgServer{name: words[1], addr: words[2]}
			srv.read(words[3:])
			cur.servers = append(cur.servers, srv)
		case words[0] == "default-server":
			cur.defaultServer.read(words[1:])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("haproxy config %s: %w", file, err)
	}
	return out, nil
}
