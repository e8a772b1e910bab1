package runtime

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRecordedShowProcListsTheOldWorkerOn26And30(t *testing.T) {
	for _, v := range recordedVersions {
		t.Run(v.name, func(t *testing.T) {
			p, err := parseProcs(recordedIn(t, v.dir, "show_proc_old_worker.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if p.Master == 0 || len(p.Workers) != 1 || len(p.Old) != 1 || p.Workers[0].Reloads != 0 || p.Old[0].Reloads != 1 {
				t.Fatalf("got %+v", p)
			}
			if cur, old := p.Listed(p.Old[0].Pid); cur || !old {
				t.Fatalf("old worker %d listed as current %v, old %v", p.Old[0].Pid, cur, old)
			}
			if cur, old := p.Listed(p.Workers[0].Pid); !cur || old {
				t.Fatalf("worker %d listed as current %v, old %v", p.Workers[0].Pid, cur, old)
			}
			if cur, old := p.Listed(p.Master); cur || old {
				t.Fatal("the master listed as a worker")
			}
		})
	}
}

func TestShowProcWithoutOldWorkersAndNotFromAMaster(t *testing.T) {
	p, err := parseProcs("#<PID>          <type>          <reloads>       <uptime>        <version>\n" +
		"10876           master          2 [failed: 0]   0d00h00m05s     2.6.12-1+deb12u4\n# workers\n" +
		"11408           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n# programs\n\n")
	if err != nil || p.Master != 10876 || !slices.Equal(p.Workers, []Proc{{Pid: 11408}}) || len(p.Old) != 0 {
		t.Fatalf("got %+v, %v", p, err)
	}
	for _, out := range []string{"", "Unknown command: 'show proc'\n", "# workers\n12 worker 0\n", "12 master x\n"} {
		if _, err := parseProcs(out); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", out, err)
		}
	}
}

func TestMasterProcsReadsTheMasterCLIToItsEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	reply := recorded(t, "show_proc_old_worker.txt")
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			// The master CLI answers once the input has ended.
			in, _ := io.ReadAll(conn)
			if string(in) == "show proc\n" {
				_, _ = conn.Write([]byte(reply))
			}
			conn.Close()
		}
	}()
	m, err := NewMaster(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.Procs(context.Background())
	if err != nil || len(p.Old) != 1 {
		t.Fatalf("got %+v, %v", p, err)
	}
	if _, err := NewMaster("master.sock", 0); err == nil {
		t.Fatal("a relative path was accepted")
	}
}

func TestSocketOwnerIsTheListeningProcessOrNoneForTCP(t *testing.T) {
	_, c := newFakeUnix(t, func(string) string { return "" })
	pid, err := c.SocketOwner(context.Background())
	if err != nil || pid != os.Getpid() {
		t.Fatalf("got %d, %v; want this process, %d", pid, err, os.Getpid())
	}
	f, c := newFakeTCP(t, func(string) string { return "" })
	if _, err := c.SocketOwner(context.Background()); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("tcp: got %v, want ErrNoOwner", err)
	}
	if len(f.seen()) != 0 {
		t.Fatalf("sent %q", f.seen())
	}
}
