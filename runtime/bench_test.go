package runtime_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/runtime"
)

// benchHAProxy starts a real HAProxy with one backend of n servers (checks
// every 10 s, so that they cost nothing) and returns haroll's client for it.
func benchHAProxy(b *testing.B, n int) (*harness.HAProxy, *runtime.Client) {
	b.Helper()
	if _, err := harness.FindHAProxy(); err != nil {
		if os.Getenv("CI") != "" {
			b.Fatal(err)
		}
		b.Skip(err)
	}
	servers := make([]harness.Server, n)
	for i := range servers {
		servers[i] = harness.Server{Name: fmt.Sprintf("s%d", i+1), Addr: fmt.Sprintf("127.0.0.1:%d", 20000+i), Weight: 7}
	}
	port, err := harness.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := harness.StartHAProxy(ctx, harness.HAProxyConfig{Dir: b.TempDir(), Frontend: port, Servers: servers, Inter: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Stop() })
	c, err := runtime.New(h.Socket, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	return h, c
}

// rawExec is the floor: one connection, one command written, the whole reply
// read, nothing parsed or checked.
func rawExec(b *testing.B, socket, cmd string) {
	conn, err := net.Dial("unix", socket)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSetWeight: haroll's SetWeight (the command, then `get weight` to
// read it back) against the bare command on a raw socket.
func BenchmarkSetWeight(b *testing.B) {
	h, c := benchHAProxy(b, 3)
	ctx := context.Background()
	b.Run("haroll", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := c.SetWeight(ctx, "app", "s1", 1+i%2); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			rawExec(b, h.Socket, fmt.Sprintf("set weight app/s1 %d", 1+i%2))
		}
	})
}

// BenchmarkServer: one server's status. haroll asks for the server's own
// line once it knows its id (`show stat app 4 <sid>`); whole-backend is how
// it did it before (`show stat app 4 -1`, parse every server, pick one), and
// the raw rows send the same two commands with nothing parsed. 3 and 100
// servers in the backend.
func BenchmarkServer(b *testing.B) {
	for _, n := range []int{3, 100} {
		h, c := benchHAProxy(b, n)
		ctx := context.Background()
		b.Run(fmt.Sprintf("servers=%d/haroll", n), func(b *testing.B) {
			for b.Loop() {
				if s, err := c.Server(ctx, "app", "s1"); err != nil || s.Server != "s1" {
					b.Fatal(s, err)
				}
			}
		})
		b.Run(fmt.Sprintf("servers=%d/haroll-whole-backend", n), func(b *testing.B) {
			for b.Loop() {
				all, err := c.Backend(ctx, "app")
				if err != nil || !slices.ContainsFunc(all, func(s runtime.ServerStat) bool { return s.Server == "s1" }) {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("servers=%d/raw-own-line", n), func(b *testing.B) {
			for b.Loop() {
				rawExec(b, h.Socket, "show stat app 4 1")
			}
		})
		b.Run(fmt.Sprintf("servers=%d/raw-whole-backend", n), func(b *testing.B) {
			for b.Loop() {
				rawExec(b, h.Socket, "show stat app 4 -1")
			}
		})
	}
}

// BenchmarkShowStat: the whole backend parsed (`show stat`, every server)
// against the same command read raw.
func BenchmarkShowStat(b *testing.B) {
	for _, n := range []int{3, 100} {
		h, c := benchHAProxy(b, n)
		ctx := context.Background()
		b.Run(fmt.Sprintf("servers=%d/haroll", n), func(b *testing.B) {
			for b.Loop() {
				if all, err := c.Backend(ctx, "app"); err != nil || len(all) != n {
					b.Fatal(len(all), err)
				}
			}
		})
		b.Run(fmt.Sprintf("servers=%d/raw", n), func(b *testing.B) {
			for b.Loop() {
				rawExec(b, h.Socket, "show stat app 4 -1")
			}
		})
	}
}
