package harness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has not
// handed out before. It is picked below the kernel's ephemeral range (ip_local_port_range, from
// which connect() and Docker's ephemeral publications take their ports): a fixed port that a test
// binds only seconds later, such as the idle side of a pair that a new container publishes, could
// otherwise be taken meanwhile by one of the thousands of client sockets a load test opens (seen in
// CI: "bind: address already in use" on a pair's alt port). Another process may still take it, which
// is why HAProxy configs from this package refuse SO_REUSEPORT: a clash then fails loudly.
func FreePort() (int, error) {
	lo := ephemeralLow()
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
	}
	const first = 10000 // above the well-known and most registered service ports
	if lo-first >= 1000 {
		for range 200 {
			p := first + rand.IntN(lo-first)
			if ports.given[p] || !free(p) {
				continue
			}
			ports.given[p] = true
			return p, nil
		}
	}
	// No room below the ephemeral range (or all tries taken): the kernel's choice.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	ports.given[p] = true
	return p, nil
}

var ports struct {
	sync.Mutex
	given map[int]bool
}

// free reports whether 127.0.0.1:p can be listened on now.
func free(p int) bool {
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// ephemeralLow is the lowest port of the kernel's ephemeral range (32768 when it cannot be read).
func ephemeralLow() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
			lo = 32768
		}
	}
	return lo
}
