//go:build linux

package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults applied by StartHAProxy to the zero fields of HAProxyConfig.
const (
	DefaultBackend   = "app"
	DefaultInter     = 200 * time.Millisecond
	DefaultRise      = 2
	DefaultFall      = 2
	DefaultCheckPath = "/health"
)

// DefaultHAProxyPath is where Debian's haproxy package installs the binary.
const DefaultHAProxyPath = "/usr/sbin/haproxy"

var (
	// ErrNoHAProxy means no haproxy binary was found: HAPROXY_BIN names none that is executable,
	// or, with it unset, there is none at DefaultHAProxyPath nor on PATH.
	ErrNoHAProxy = errors.New("haproxy not found")
	// ErrHAProxyExited means the haproxy process ended when it should have been running:
	// during start-up (bad config, port in use) or before Stop. The error carries its log.
	ErrHAProxyExited = errors.New("haproxy exited")
	// ErrHAProxyConfig means an HAProxyConfig cannot be rendered.
	ErrHAProxyConfig = errors.New("invalid haproxy config")
)

const (
	startTimeout = 10 * time.Second // start-up or reload wait when ctx has no deadline
	stopTimeout  = 5 * time.Second  // SIGTERM grace before SIGKILL
	execTimeout  = 5 * time.Second  // one runtime API command
	maxSocketLen = 100              // sun_path is 108 bytes; keep a margin
	logTailBytes = 4 << 10
)

// HAProxyConfig describes one HAProxy instance: one frontend on 127.0.0.1 in front of one backend.
type HAProxyConfig struct {
	Dir      string // where haproxy.cfg, haproxy.log and admin.sock go; created if missing
	Frontend int    // frontend port on 127.0.0.1
	Backend  string // backend name (default DefaultBackend)
	Servers  []Server
	// Health checks: default-server inter/fastinter/downinter Inter, rise Rise, fall Fall.
	Inter      time.Duration
	Rise, Fall int
	// CheckPath makes the checks "option httpchk GET <path>" expecting status 200 (default DefaultCheckPath).
	CheckPath string
	Extra     string // lines appended to the backend section
	// PidNamespace runs haproxy in a pid namespace of its own (`unshare --pid --fork`, as root), as
	// in a container: the pids it reports (`show info`, `show proc`) are its namespace's and mean
	// other processes here. Its socket files are on this host, as a container's bind-mounted ones.
	PidNamespace bool
	// ServerStateFile, when set, is the global `server-state-file` (an
	// absolute path), with `load-server-state-from-file global` in the
	// defaults: a reload or restart loads each server's state (admin and
	// operational state, weight, address) from it, as saved there by
	// `show servers state`. HAProxy only warns when the file is missing.
	ServerStateFile string
}

// Server is one `server` line of the backend; every server is health-checked.
type Server struct {
	Name    string
	Addr    string // ip:port
	Weight  int    // 0 leaves HAProxy's default weight (1)
	Options string // appended to the server line, e.g. "cookie s1" or "disabled"
}

// HAProxy is a running haproxy started by StartHAProxy, in master-worker mode (-W -db): Cmd is the
// master, the child of this process; the runtime API socket reaches the current worker.
type HAProxy struct {
	Cmd    *exec.Cmd
	Socket string // admin-level runtime API socket of the current worker
	// MasterSocket is the master CLI (-S): `show proc` lists the current and the old workers.
	MasterSocket string
	ConfigPath   string // rewrite it, then Reload, to change the configuration
	LogPath      string // haproxy's stdout and stderr: alerts, health check changes, one line per request
	Frontend     int

	bin      string
	pidNS    bool          // Cmd is unshare, and master the haproxy master it forked
	master   int           // the master's pid here, with pidNS
	done     chan struct{} // closed when Cmd has been waited for
	waitErr  error
	tmpDir   string // holds the socket when Dir's path is too long for a unix socket
	stopOnce sync.Once
	stopErr  error
}

// HAProxyEnv names the environment variable that, when set, is the haproxy binary to run (e.g. the
// HAProxy 3.0 wrapper .ci/deps installs) instead of DefaultHAProxyPath or PATH.
const HAProxyEnv = "HAPROXY_BIN"

// FindHAProxy returns the haproxy binary to run: $HAPROXY_BIN when set (an error wrapping
// ErrNoHAProxy when it is not an executable file: no fallback, so a run meant for one version never
// silently tests another), else DefaultHAProxyPath, else haproxy on PATH, else ErrNoHAProxy.
func FindHAProxy() (string, error) {
	if p := os.Getenv(HAProxyEnv); p != "" {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v (run .ci/deps for HAProxy 3.0)", ErrNoHAProxy, HAProxyEnv, p, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: %s=%s is not an executable file", ErrNoHAProxy, HAProxyEnv, p)
		}
		return p, nil
	}
	if fi, err := os.Stat(DefaultHAProxyPath); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return DefaultHAProxyPath, nil
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w at %s or on PATH (apt-get install -y haproxy, or run .ci/deps)", ErrNoHAProxy, DefaultHAProxyPath)
}

// Render returns the haproxy.cfg that StartHAProxy would write for c, with its socket in c.Dir.
func (c HAProxyConfig) Render() (string, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return "", err
	}
	return c.render(filepath.Join(c.Dir, "admin.sock")), nil
}

func (c HAProxyConfig) withDefaults() HAProxyConfig {
	if c.Backend == "" {
		c.Backend = DefaultBackend
	}
	if c.Inter == 0 {
		c.Inter = DefaultInter
	}
	if c.Rise == 0 {
		c.Rise = DefaultRise
	}
	if c.Fall == 0 {
		c.Fall = DefaultFall
	}
	if c.CheckPath == "" {
		c.CheckPath = DefaultCheckPath
	}
	return c
}

// namePattern keeps names safe for the runtime API's text protocol (no spaces, ';' or newlines).
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

func (c HAProxyConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrHAProxyConfig}, args...)...))
	}
	if c.Dir == "" {
		bad("Dir is empty")
	}
	if c.Frontend <= 0 || c.Frontend > 65535 {
		bad("frontend port %d", c.Frontend)
	}
	if !namePattern.MatchString(c.Backend) {
		bad("backend name %q", c.Backend)
	}
	if c.Inter < time.Millisecond {
		bad("check inter %s: want >= 1ms", c.Inter)
	}
	if c.Rise < 1 || c.Fall < 1 {
		bad("rise %d, fall %d: want >= 1", c.Rise, c.Fall)
	}
	if strings.ContainsAny(c.CheckPath, " \t\r\n") || !strings.HasPrefix(c.CheckPath, "/") {
		bad("check path %q", c.CheckPath)
	}
	seen := map[string]bool{}
	for _, s := range c.Servers {
		if !namePattern.MatchString(s.Name) || seen[s.Name] {
			bad("server name %q (empty, duplicate or with unsafe characters)", s.Name)
		}
		seen[s.Name] = true
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			bad("server %s address %q: %v", s.Name, s.Addr, err)
		}
		if s.Weight < 0 || s.Weight > 256 {
			bad("server %s weight %d: want 0..256", s.Name, s.Weight)
		}
		if strings.ContainsAny(s.Options, "\r\n") {
			bad("server %s options contain a newline", s.Name)
		}
	}
	if c.ServerStateFile != "" && (!filepath.IsAbs(c.ServerStateFile) || strings.ContainsAny(c.ServerStateFile, " \t\r\n\"")) {
		bad("server state file %q: want an absolute path without blanks", c.ServerStateFile)
	}
	return errors.Join(errs...)
}

func (c HAProxyConfig) render(socket string) string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by haroll's integration harness.")
	w("global")
	w("    stats socket %s mode 600 level admin expose-fd listeners", socket)
	w("    stats timeout 2m")
	w("    # A second instance binding the same port must fail to start, not share the port.")
	w("    noreuseport")
	w("    log stdout format raw local0 info")
	if c.ServerStateFile != "" {
		w("    server-state-file %s", c.ServerStateFile)
	}
	w("")
	w("defaults")
	w("    mode http")
	w("    log global")
	w("    option httplog")
	w("    option log-health-checks")
	w("    timeout connect 2s")
	w("    timeout client 30s")
	w("    timeout server 30s")
	w("    timeout queue 10s")
	w("    option redispatch")
	w("    retries 3")
	w("    option http-keep-alive")
	if c.ServerStateFile != "" {
		w("    load-server-state-from-file global")
	}
	w("")
	w("frontend fe_%s", c.Backend)
	w("    bind 127.0.0.1:%d", c.Frontend)
	w("    default_backend %s", c.Backend)
	w("")
	w("backend %s", c.Backend)
	w("    balance roundrobin")
	w("    option httpchk GET %s", c.CheckPath)
	w("    http-check expect status 200")
	w("    default-server inter %s fastinter %s downinter %s rise %d fall %d", ms(c.Inter), ms(c.Inter), ms(c.Inter), c.Rise, c.Fall)
	for _, s := range c.Servers {
		line := fmt.Sprintf("    server %s %s check", s.Name, s.Addr)
		if s.Weight > 0 {
			line += fmt.Sprintf(" weight %d", s.Weight)
		}
		if s.Options != "" {
			line += " " + s.Options
		}
		w("%s", line)
	}
	for _, l := range strings.Split(strings.TrimSpace(c.Extra), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			w("    %s", l)
		}
	}
	return b.String()
}

// StartHAProxy writes the config to cfg.Dir/haproxy.cfg and starts haproxy as a child process
// (master-worker, foreground), logging to cfg.Dir/haproxy.log. It returns once the runtime API socket
// answers `show info` and the frontend accepts connections, or when ctx ends (10 s when ctx has no
// deadline). ctx bounds only the start-up: cancelling it later does not stop haproxy; call Stop.
// Errors: ErrNoHAProxy, ErrHAProxyConfig, or ErrHAProxyExited with the end of haproxy's log when it
// could not start (a taken port, a bad Extra line).
func StartHAProxy(ctx context.Context, cfg HAProxyConfig) (*HAProxy, error) {
	bin, err := FindHAProxy()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start haproxy: %w", err)
	}
	h := &HAProxy{
		Socket:     filepath.Join(cfg.Dir, "admin.sock"),
		ConfigPath: filepath.Join(cfg.Dir, "haproxy.cfg"),
		LogPath:    filepath.Join(cfg.Dir, "haproxy.log"),
		Frontend:   cfg.Frontend,
	}
	h.MasterSocket = filepath.Join(cfg.Dir, "master.sock")
	if len(h.MasterSocket) > maxSocketLen {
		if h.tmpDir, err = os.MkdirTemp("", "haroll-haproxy-"); err != nil {
			return nil, fmt.Errorf("start haproxy: socket dir: %w", err)
		}
		h.Socket = filepath.Join(h.tmpDir, "admin.sock")
		h.MasterSocket = filepath.Join(h.tmpDir, "master.sock")
	}
	if err := h.start(ctx, bin, cfg); err != nil {
		h.Stop()
		return nil, err
	}
	return h, nil
}

func (h *HAProxy) start(ctx context.Context, bin string, cfg HAProxyConfig) error {
	if err := os.WriteFile(h.ConfigPath, []byte(cfg.render(h.Socket)), 0o644); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	h.bin, h.pidNS = bin, cfg.PidNamespace
	return h.launch(ctx, os.O_TRUNC)
}

// launch starts haproxy from ConfigPath, its log opened with logFlag
// (O_TRUNC or O_APPEND), and waits until it serves.
func (h *HAProxy) launch(ctx context.Context, logFlag int) error {
	bin := h.bin
	h.done = make(chan struct{})
	logFile, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|logFlag, 0o644)
	if err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	defer logFile.Close() // the child holds its own copy
	_ = os.Remove(h.Socket)
	_ = os.Remove(h.MasterSocket)

	// Not CommandContext: ctx bounds the start-up only.
	h.Cmd = exec.Command(bin, "-W", "-db", "-S", h.MasterSocket, "-f", h.ConfigPath)
	if h.pidNS {
		// --kill-child: haproxy, pid 1 of the namespace, goes when unshare does.
		h.Cmd = exec.Command("unshare", "--pid", "--fork", "--kill-child", bin, "-W", "-db", "-S", h.MasterSocket, "-f", h.ConfigPath)
	}
	h.Cmd.Dir = filepath.Dir(h.ConfigPath)
	h.Cmd.Stdout, h.Cmd.Stderr = logFile, logFile // files, not pipes: Wait never hangs on a worker
	// If the test binary dies (a test timeout panics without running cleanups), haproxy goes too
	// instead of holding its port for the next run.
	h.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := startOnLockedThread(h.Cmd); err != nil {
		return fmt.Errorf("start haproxy %s: %w", bin, err)
	}
	cmd, done := h.Cmd, h.done // a Restart replaces both
	go func() {
		h.waitErr = cmd.Wait()
		close(done)
	}()
	if err := h.waitReady(ctx, "start", func(info map[string]string) bool { return info["Pid"] != "" }); err != nil {
		return err
	}
	if h.pidNS {
		// unshare forked the master before anything answered.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if err != nil {
			return fmt.Errorf("start haproxy: the master forked by unshare: %w", err)
		}
		if h.master, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("start haproxy: the master forked by unshare: children %q", b)
		}
	}
	// The master registers its signal handlers (SIGUSR2 = reload) only once its loop runs, after the
	// worker is up; a reload signalled before then is lost. The master CLI answers from that loop.
	return h.waitMaster(ctx)
}

func (h *HAProxy) waitMaster(ctx context.Context) error {
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	for {
		reply, err := h.ExecMaster("show proc")
		if err == nil && strings.Contains(reply, "master") {
			return nil
		}
		select {
		case <-h.done:
			return fmt.Errorf("start haproxy: %w (%v); log %s:\n%s", ErrHAProxyExited, h.waitErr, h.LogPath, h.logTail())
		case <-ctx.Done():
			return fmt.Errorf("start haproxy: master CLI not ready (%q, %v): %w", reply, err, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// waitReady polls until the socket's `show info` satisfies ok and the frontend accepts.
func (h *HAProxy) waitReady(ctx context.Context, what string, ok func(map[string]string) bool) error {
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-h.done:
			return fmt.Errorf("%s haproxy: %w (%v); log %s:\n%s", what, ErrHAProxyExited, h.waitErr, h.LogPath, h.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s haproxy: not ready (%v): %w; log %s:\n%s", what, last, ctx.Err(), h.LogPath, h.logTail())
		case <-tick.C:
		}
		info, err := h.Info()
		if err != nil {
			last = err
			continue
		}
		if !ok(info) {
			last = fmt.Errorf("show info: pid %s", info["Pid"])
			continue
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Frontend)), time.Second)
		if err != nil {
			last = err
			continue
		}
		conn.Close()
		return nil
	}
}

// Exec sends one raw runtime API command (e.g. "show stat app 4 -1", "set weight app/s1 0") and
// returns the whole reply. It takes at most 5 s. An empty reply is not an error here: several
// commands answer nothing on success.
func (h *HAProxy) Exec(cmd string) (string, error) { return execUnix(h.Socket, cmd) }

// ExecMaster sends one command to the master CLI (e.g. "show proc"), with the same limits as Exec.
func (h *HAProxy) ExecMaster(cmd string) (string, error) { return execUnix(h.MasterSocket, cmd) }

func execUnix(socket, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return "", fmt.Errorf("haproxy command %q: one line only", cmd)
	}
	conn, err := net.DialTimeout("unix", socket, execTimeout)
	if err != nil {
		return "", fmt.Errorf("haproxy command %q: %w", cmd, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(execTimeout)); err != nil {
		return "", fmt.Errorf("haproxy command %q: %w", cmd, err)
	}
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy command %q: %w", cmd, err)
	}
	// The master CLI answers only once it sees the end of input; the worker's socket does not mind.
	if err := conn.(*net.UnixConn).CloseWrite(); err != nil {
		return "", fmt.Errorf("haproxy command %q: %w", cmd, err)
	}
	reply, err := io.ReadAll(conn)
	if err != nil {
		return string(reply), fmt.Errorf("haproxy command %q: %w", cmd, err)
	}
	return string(reply), nil
}

// Info returns `show info` as a map ("Pid", "Uptime_sec", "Version", ...). Pid is the current
// worker's: it changes on every reload.
func (h *HAProxy) Info() (map[string]string, error) {
	reply, err := h.Exec("show info")
	if err != nil {
		return nil, err
	}
	info := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(reply))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			info[k] = strings.TrimSpace(v)
		}
	}
	if info["Name"] == "" {
		return nil, fmt.Errorf("haproxy show info: unexpected reply %q", reply)
	}
	return info, nil
}

// Reload makes the master re-read ConfigPath (SIGUSR2), as an operator's `systemctl reload` does,
// and waits until a new worker answers on the socket and the frontend accepts. The old worker
// finishes its sessions in the background. Every runtime change (weight, state, address) is lost.
func (h *HAProxy) Reload(ctx context.Context) error {
	before, err := h.Info()
	if err != nil {
		return fmt.Errorf("reload haproxy: %w", err)
	}
	if err := h.signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("reload haproxy: %w", err)
	}
	// The master re-executes itself on a reload: its CLI is gone for a moment, so the reload is
	// done only when the new worker answers and the master lists it.
	return h.waitReady(ctx, "reload", func(info map[string]string) bool {
		if info["Pid"] == before["Pid"] {
			return false
		}
		procs, err := h.ExecMaster("show proc")
		return err == nil && strings.Contains(procs, info["Pid"]+" ")
	})
}

// Restart stops haproxy as `systemctl restart` does (SIGTERM to the master:
// a hard stop that closes every connection, then a new master from
// ConfigPath) and waits until the new process serves. Every runtime change
// is lost, and the frontend refuses connections in between.
func (h *HAProxy) Restart(ctx context.Context) error {
	if err := h.signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("restart haproxy: %w", err)
	}
	select {
	case <-h.done:
	case <-time.After(stopTimeout):
		_ = h.Cmd.Process.Kill()
		<-h.done
	}
	if err := h.launch(ctx, os.O_APPEND); err != nil {
		return fmt.Errorf("restart haproxy: %w", err)
	}
	return nil
}

// Stop ends this haproxy (its master, by PID, which stops the workers): SIGTERM, then SIGKILL after
// 5 s, and waits for it. It returns an error wrapping ErrHAProxyExited when haproxy had already died
// before Stop, or an error when it had to be killed. Calling it again returns the same error.
func (h *HAProxy) Stop() error {
	h.stopOnce.Do(func() {
		defer func() {
			if h.tmpDir != "" {
				os.RemoveAll(h.tmpDir)
			}
		}()
		if h.Cmd == nil || h.Cmd.Process == nil {
			return
		}
		select {
		case <-h.done:
			h.stopErr = fmt.Errorf("%w before Stop (%v); log %s:\n%s", ErrHAProxyExited, h.waitErr, h.LogPath, h.logTail())
			return
		default:
		}
		_ = h.signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(stopTimeout):
			_ = h.Cmd.Process.Kill()
			<-h.done
			h.stopErr = fmt.Errorf("haproxy pid %d ignored SIGTERM for %s and was killed", h.Cmd.Process.Pid, stopTimeout)
		}
	})
	return h.stopErr
}

// signal sends sig to the haproxy master: Cmd, or the master unshare forked.
func (h *HAProxy) signal(sig syscall.Signal) error {
	if h.pidNS {
		return syscall.Kill(h.master, sig)
	}
	return h.Cmd.Process.Signal(sig)
}

var (
	forkOnce sync.Once
	forks    chan func()
)

// startOnLockedThread starts cmd from one OS thread that never exits. Pdeathsig fires when the
// forking *thread* ends, not the process: a goroutine that locks a thread and exits without
// unlocking (as network-namespace code does) would otherwise end that thread and kill haproxy.
func startOnLockedThread(cmd *exec.Cmd) error {
	forkOnce.Do(func() {
		forks = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this thread stays put and stays out of the pool
			for f := range forks {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	forks <- func() { errc <- cmd.Start() }
	return <-errc
}

func (h *HAProxy) logTail() string {
	b, err := os.ReadFile(h.LogPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return strings.TrimSpace(string(b))
}
