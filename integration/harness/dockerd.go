package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Dockerd is a private Docker daemon that a test starts, restarts and
// stops, beside the machine's engine and without touching it: its own API
// socket, data root, exec root (where it runs its own containerd) and
// pidfile, an empty config file (the machine's /etc/docker/daemon.json is
// not read), no iptables or ip_forward changes, and a bridge of its own that
// StartDockerd creates (10.214.N.1/24) and Close deletes. It runs with
// --live-restore: its containers keep running while it is down, so a
// restart is what a client of the API sees go away and come back.
type Dockerd struct {
	// Host is the daemon's API as `docker --host` and the agent's
	// docker.host take it: unix://<dir>/d.sock.
	Host string
	// Bridge is the bridge its containers' default network uses; the host
	// reaches them through its address, Gateway.
	Bridge, Gateway string

	dir        string
	bridgeMade bool
	args       []string
	cmd        *exec.Cmd
	done       chan struct{} // closed when cmd has exited
}

// DockerdMissing says why a private dockerd cannot run here ("" when it can):
// it needs the dockerd binary, root, and the ip command for its bridge.
func DockerdMissing() string {
	for _, bin := range []string{"dockerd", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return "a private Docker daemon needs " + bin + " on PATH"
		}
	}
	if os.Geteuid() != 0 {
		return "a private Docker daemon needs root"
	}
	return ""
}

// StartDockerd creates a bridge and starts a daemon on it, and waits until
// its API answers. Its files live under a new directory in /tmp (a unix
// socket's path must stay short). On error everything it made is removed.
func StartDockerd(ctx context.Context) (d *Dockerd, err error) {
	dir, err := os.MkdirTemp("/tmp", "hxd")
	if err != nil {
		return nil, err
	}
	// The directory's random part names the bridge too: at most 15 bytes.
	d = &Dockerd{dir: dir, Host: "unix://" + filepath.Join(dir, "d.sock"), Bridge: filepath.Base(dir)}
	if len(d.Bridge) > 15 {
		d.Bridge = d.Bridge[:15]
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}\n"), 0o644); err != nil {
		return d, err
	}
	if err := d.addBridge(ctx); err != nil {
		return d, err
	}
	d.args = []string{
		"--host", d.Host,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "x"),
		"--pidfile", filepath.Join(dir, "d.pid"),
		"--config-file", filepath.Join(dir, "config.json"),
		"--bridge", d.Bridge,
		"--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--live-restore",
		// FROM scratch test images are a few MB: copying them per
		// container costs less than setting up an overlay here.
		"--storage-driver", "vfs",
	}
	return d, d.start(ctx)
}

// addBridge creates the daemon's bridge on a 10.214.N.0/24 subnet that no
// interface of the machine uses yet.
func (d *Dockerd) addBridge(ctx context.Context) error {
	used := map[string]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip4 := ipn.IP.To4(); ip4 != nil && ip4[0] == 10 && ip4[1] == 214 {
				used[strconv.Itoa(int(ip4[2]))] = true
			}
		}
	}
	if _, err := run(ctx, "ip", "link", "add", "name", d.Bridge, "type", "bridge"); err != nil {
		return err
	}
	d.bridgeMade = true
	start := rand.IntN(250)
	for i := range 250 {
		n := strconv.Itoa(1 + (start+i)%250)
		if used[n] {
			continue
		}
		gw := "10.214." + n + ".1"
		if _, err := run(ctx, "ip", "addr", "add", gw+"/24", "dev", d.Bridge); err != nil {
			continue // taken meanwhile
		}
		d.Gateway = gw
		_, err := run(ctx, "ip", "link", "set", d.Bridge, "up")
		return err
	}
	return errors.New("private dockerd: no free subnet in 10.214.0.0/16 for its bridge")
}

// start runs dockerd in a process group of its own and waits until its API
// answers (at most 30 s, or until ctx ends).
func (d *Dockerd) start(ctx context.Context) error {
	logf, err := os.OpenFile(d.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("dockerd", d.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("private dockerd: %w", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(d.done)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if d.Ping(ctx) == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("private dockerd exited at start: %s\n%s", cmd.ProcessState, d.LogTail(20))
		case <-ctx.Done():
			return fmt.Errorf("private dockerd does not answer on %s: %w\n%s", d.Host, ctx.Err(), d.LogTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Ping asks the daemon's API for /_ping.
func (d *Dockerd) Ping(ctx context.Context) error {
	sock := strings.TrimPrefix(d.Host, "unix://")
	c := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dockerd/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("private dockerd: /_ping: %s", resp.Status)
	}
	return nil
}

// RestartTimes is what a restart looked like to a client, each figure from
// the SIGTERM.
type RestartTimes struct {
	// Exited is when the old daemon had exited.
	Exited time.Duration
	// Unreachable is when its API first failed to answer (it answers for
	// a while after the SIGTERM); Back is when the new daemon answered.
	Unreachable, Back time.Duration
}

// Away is how long the API did not answer.
func (r RestartTimes) Away() time.Duration { return r.Back - r.Unreachable }

func (r RestartTimes) String() string {
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("API unreachable for %s (from %s to %s after the SIGTERM; the old daemon exited at %s)",
		ms(r.Away()), ms(r.Unreachable), ms(r.Back), ms(r.Exited))
}

// Restart is what `systemctl restart docker` does: SIGTERM, wait for the
// daemon to exit, start it again with the same flags. With --live-restore
// the containers run on.
func (d *Dockerd) Restart(ctx context.Context) (RestartTimes, error) {
	var rt RestartTimes
	begin := time.Now()
	// The API's first failure, watched from the SIGTERM on.
	unreachable := make(chan time.Duration, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			if d.Ping(watchCtx) != nil {
				unreachable <- time.Since(begin)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		close(unreachable)
	}()
	if err := d.stop(30 * time.Second); err != nil {
		return rt, err
	}
	rt.Exited = time.Since(begin)
	if err := d.start(ctx); err != nil {
		return rt, err
	}
	rt.Back = time.Since(begin)
	stopWatch()
	rt.Unreachable = rt.Exited
	if u, ok := <-unreachable; ok {
		rt.Unreachable = u
	}
	return rt, nil
}

// stop sends SIGTERM and waits for the daemon to exit; past timeout it kills
// the daemon's process group.
func (d *Dockerd) stop(timeout time.Duration) error {
	if d.cmd == nil {
		return nil
	}
	defer func() { d.cmd = nil }()
	select {
	case <-d.done:
		return fmt.Errorf("private dockerd had exited: %s\n%s", d.cmd.ProcessState, d.LogTail(20))
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-d.done:
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		return fmt.Errorf("private dockerd did not exit within %s of SIGTERM: killed\n%s", timeout, d.LogTail(20))
	}
}

// Load copies images from the machine's engine into the daemon.
func (d *Dockerd) Load(ctx context.Context, refs ...string) error {
	save := exec.CommandContext(ctx, "docker", append([]string{"save"}, refs...)...)
	load := exec.CommandContext(ctx, "docker", "--host", d.Host, "load", "-q")
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	load.Stdin = pipe
	var saveErr, loadOut strings.Builder
	save.Stderr = &saveErr
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := save.Start(); err != nil {
		return err
	}
	lerr := load.Run()
	serr := save.Wait()
	if serr != nil {
		return fmt.Errorf("docker save %s: %w: %s", strings.Join(refs, " "), serr, saveErr.String())
	}
	if lerr != nil {
		return fmt.Errorf("docker --host %s load: %w: %s", d.Host, lerr, loadOut.String())
	}
	return nil
}

// Docker runs the docker CLI against the daemon.
func (d *Dockerd) Docker(ctx context.Context, args ...string) (string, error) {
	return docker(ctx, append([]string{"--host", d.Host}, args...)...)
}

// Version returns the daemon's version, e.g. "20.10.24+dfsg1", and its
// major number.
func (d *Dockerd) Version(ctx context.Context) (string, int, error) {
	v, err := d.Docker(ctx, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		return "", 0, err
	}
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return v, 0, fmt.Errorf("private dockerd: version %q: %w", v, err)
	}
	return v, n, nil
}

// LogPath is the daemon's log, across its restarts.
func (d *Dockerd) LogPath() string { return filepath.Join(d.dir, "dockerd.log") }

// LogTail returns the last n lines of the daemon's log.
func (d *Dockerd) LogTail(n int) string {
	b, err := os.ReadFile(d.LogPath())
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Close removes every container of the daemon (with --live-restore they
// would outlive it), stops it, stops the containerd it started if that
// outlives it, unmounts what it left mounted under its directory, removes
// the directory and deletes the bridge.
func (d *Dockerd) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d.cmd != nil {
		if ids, err := d.Docker(ctx, "ps", "-aq"); err == nil && ids != "" {
			_, _ = d.Docker(ctx, append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
		_ = d.stop(20 * time.Second)
	}
	// dockerd runs its containerd in a session of its own, so the process
	// group above does not hold it; its pidfile does.
	if b, err := os.ReadFile(filepath.Join(d.dir, "x", "containerd", "containerd.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 && processIs(pid, "containerd") {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			if processIs(pid, "containerd") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// A container left running (the daemon did not answer to remove it)
	// keeps its shim, which names the daemon's containerd socket; killed,
	// it leaves its (empty) cgroups, named by its ID.
	killShimsOf(filepath.Join(d.dir, "x") + "/")
	if ctrs, err := os.ReadDir(filepath.Join(d.dir, "data", "containers")); err == nil {
		time.Sleep(100 * time.Millisecond) // the killed processes leave their cgroups
		for _, c := range ctrs {
			if len(c.Name()) != 64 || strings.Trim(c.Name(), "0123456789abcdef") != "" {
				continue
			}
			for _, pattern := range []string{"/sys/fs/cgroup/*/docker/" + c.Name(), "/sys/fs/cgroup/docker/" + c.Name()} {
				dirs, _ := filepath.Glob(pattern)
				for _, dir := range dirs {
					_ = syscall.Rmdir(dir) // only an empty cgroup goes
				}
			}
		}
	}
	unmountUnder(d.dir)
	_ = os.RemoveAll(d.dir)
	if d.bridgeMade {
		_, _ = run(ctx, "ip", "link", "del", d.Bridge)
	}
}

// killShimsOf kills every containerd shim whose command line names a path
// under execRoot, and first the containers it runs (its children: killing a
// container's init ends every process of the container).
func killShimsOf(execRoot string) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	shims := map[int]bool{}
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		pids = append(pids, pid)
		if !strings.HasPrefix(comm(pid), "containerd-shim") {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), execRoot) {
			shims[pid] = true
		}
	}
	if len(shims) == 0 {
		return
	}
	for _, pid := range pids {
		if shims[parent(pid)] {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for pid := range shims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// parent returns pid's parent pid, 0 if unknown.
func parent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// processIs reports whether pid runs a program named name (a pid from an
// old pidfile may have been reused).
func processIs(pid int, name string) bool { return comm(pid) == name }

// unmountUnder detaches every mount at or below dir (dockerd makes its data
// root a mount of its own, and leaves it), deepest first.
func unmountUnder(dir string) {
	for range 10 {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return
		}
		var points []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// id parent major:minor root mountpoint ...
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
				points = append(points, fields[4])
			}
		}
		f.Close()
		if len(points) == 0 {
			return
		}
		sort.Sort(sort.Reverse(sort.StringSlice(points)))
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
}

// run runs a command (no shell) and returns its trimmed stdout.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
