package packaging

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// install installs the package with dpkg -i and purges it at cleanup, with
// the haroll user when the package created it. It needs root; with CI set
// and not root, or with haroll already installed, the test fails.
func install(t *testing.T, deb string) {
	t.Helper()
	dpkg := need(t, "dpkg")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("installing the package needs root, and CI is set: run the tests as root")
		}
		t.Skip("installing the package needs root")
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", Name).Output(); strings.Contains(string(out), "installed") {
		t.Fatalf("package %s is already installed (%s): this test would replace and purge it; remove it first with dpkg --purge %s", Name, out, Name)
	}
	_, userErr := user.Lookup("haroll")
	t.Cleanup(func() {
		if out, err := exec.Command(dpkg, "--purge", Name).CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge %s: %v\n%s", Name, err, out)
		}
		if userErr != nil { // the package made the user: leave the machine as it was
			exec.Command("userdel", "haroll").Run()
			exec.Command("groupdel", "haroll").Run()
		}
		for _, path := range []string{BinPath, UnitPath, ConfigPath} {
			if _, err := os.Stat(path); err == nil {
				t.Errorf("%s is still there after dpkg --purge", path)
			}
		}
	})
	run(t, dpkg, "-i", deb)
}

func TestThePackageInstallsAndTheUnitsCommandStartsTheAgent(t *testing.T) {
	deb := buildDeb(t)
	install(t, deb)

	for _, path := range []string{BinPath, UnitPath, ConfigPath, ExamplesDir + "/agent.yaml", ExamplesDir + "/coordinator.yaml", ExamplesDir + "/haproxy.cfg"} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("after dpkg -i: %v", err)
		}
	}
	if out := run(t, "dpkg-query", "-W", "-f=${Conffiles}", Name); !strings.Contains(out, ConfigPath) {
		t.Errorf("dpkg does not track %s as a conffile: %q", ConfigPath, out)
	}
	if out := strings.TrimSpace(run(t, BinPath, "version")); out != "haroll "+testVersion {
		t.Errorf("%s version printed %q, want %q", BinPath, out, "haroll "+testVersion)
	}
	haroll, err := user.Lookup("haroll")
	if err != nil {
		t.Fatalf("postinst did not create the haroll user: %v", err)
	}
	uid, _ := strconv.Atoi(haroll.Uid)
	gid, _ := strconv.Atoi(haroll.Gid)
	// The unit runs as haroll: it must read its config, and nobody else may.
	if fi, err := os.Stat(ConfigPath); err == nil {
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Gid) != gid || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %s gid %d, want 0640 and group haroll (%d)", ConfigPath, fi.Mode().Perm(), st.Gid, gid)
		}
	}

	args := execStart(t, UnitPath)

	t.Run("as installed, without TLS files or HAProxy, it exits with an error naming what to fix", func(t *testing.T) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := runFor(t, cmd, 30*time.Second)
		if err == nil {
			t.Fatalf("%v exited 0 with the example config:\n%s", args, out)
		}
		t.Logf("%v:\n%s", args, out)
		if !strings.Contains(out, "/etc/haroll/tls/agent.crt") {
			t.Errorf("the error does not name the missing certificate:\n%s", out)
		}
	})

	t.Run("with HAProxy and Docker to talk to, it serves, tells systemd and stops on SIGTERM", func(t *testing.T) {
		dir := runDir(t, uid, gid)
		haproxySock := fakeHAProxy(t, filepath.Join(dir, "admin.sock"))
		dockerSock := fakeDocker(t, filepath.Join(dir, "docker.sock"))
		notify := notifySocket(t, filepath.Join(dir, "notify.sock"))
		state := filepath.Join(dir, "state")
		if err := os.Mkdir(state, 0o750); err != nil {
			t.Fatal(err)
		}
		os.Chown(state, uid, gid)

		// The unit's command line as systemd runs it, pointed at the stand-ins
		// by flags and HAROLL_* variables; only listen needs the example
		// config's TLS files, so it moves to loopback.
		full := append(args[1:], "--haproxy-socket", haproxySock, "--state-dir", state,
			"--socket", filepath.Join(dir, "agent.sock"), "--listen", "127.0.0.1:0", "--insecure")
		cmd := exec.Command(args[0], full...)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.LocalAddr().String(), "WATCHDOG_USEC=1000000",
			"HAROLL_DOCKER_HOST=unix://"+dockerSock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logs := make(chan []string, 1)
		go func() {
			var ls []string
			for s := bufio.NewScanner(stderr); s.Scan(); {
				ls = append(ls, s.Text())
			}
			logs <- ls
		}()
		t.Cleanup(func() { cmd.Process.Kill() })

		awaitState(t, notify, "READY=1", "WATCHDOG=1")
		awaitState(t, notify, "WATCHDOG=1")
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		awaitState(t, notify, "STOPPING=1", "WATCHDOG=1")
		var lines []string
		select {
		case lines = <-logs:
		case <-time.After(20 * time.Second):
			t.Fatal("the agent did not exit within 20s of SIGTERM")
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("the agent exited with %v after SIGTERM, want 0; it logged:\n%s", err, strings.Join(lines, "\n"))
		}
		t.Logf("the agent logged:\n%s", strings.Join(lines, "\n"))
		// Not a terminal, as under systemd: JSON lines for journald.
		if len(lines) == 0 {
			t.Error("the agent logged nothing at --log-level info")
		}
		for _, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Errorf("not a JSON log line: %s", l)
			}
		}
	})
}

// execStart returns the unit's ExecStart= command line, split on spaces.
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	args := strings.Fields(readUnit(t, unit)["Service"]["ExecStart"])
	if len(args) == 0 {
		t.Fatalf("%s has no ExecStart=", unit)
	}
	return args
}

// runFor runs cmd and returns its combined output, killing it after d.
func runFor(t *testing.T, cmd *exec.Cmd, d time.Duration) (string, error) {
	t.Helper()
	timer := time.AfterFunc(d, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runDir is a short-named directory the haroll user owns, for sockets and
// state_dir.
func runDir(t *testing.T, uid, gid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "haroll-pkg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fakeHAProxy answers `show info` on a unix socket, as HAProxy's stats
// socket does, with a reply recorded from HAProxy 2.6; it is all the agent
// asks before it serves.
func fakeHAProxy(t *testing.T, path string) string {
	t.Helper()
	info, err := os.ReadFile("../runtime/testdata/show_info.txt")
	if err != nil {
		t.Fatal(err)
	}
	l := listenOpen(t, path)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				// haroll asks for the interactive prompt first, then sends
				// its command: every answer ends with the prompt.
				r := bufio.NewReader(conn)
				if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "prompt" {
					return
				}
				conn.Write([]byte("\n> "))
				if _, err := r.ReadString('\n'); err == nil {
					conn.Write(append(append([]byte("\n"), info...), "\n\n> "...))
				}
			}()
		}
	}()
	return path
}

// fakeDocker answers the Docker Engine API's ping on a unix socket.
func fakeDocker(t *testing.T, path string) string {
	t.Helper()
	l := listenOpen(t, path)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.47")
		w.Header().Set("OSType", "linux")
		if r.URL.Path != "/_ping" {
			http.Error(w, `{"message":"not in this fake"}`, http.StatusNotFound)
			return
		}
		w.Write([]byte("OK"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return path
}

// listenOpen listens on a unix socket anybody may connect to.
func listenOpen(t *testing.T, path string) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	return l
}

// notifySocket stands in for systemd's notify socket.
func notifySocket(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	return conn
}

// awaitState reads notify datagrams until want, skipping those in skip;
// another one, or none within 20 s, fails the test.
func awaitState(t *testing.T, conn *net.UnixConn, want string, skip ...string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 256)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s from the agent: %v", want, err)
		}
		got := string(buf[:n])
		if got == want {
			return
		}
		if !strings.Contains(strings.Join(skip, "\n"), got) {
			t.Fatalf("got %q while waiting for %s", got, want)
		}
	}
}
