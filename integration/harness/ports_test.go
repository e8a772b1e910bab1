package harness

import (
	"fmt"
	"net"
	"testing"
)

func TestFreePortsAreBelowTheEphemeralRangeFreeAndNeverHandedOutTwice(t *testing.T) {
	lo := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if lo-10000 >= 1000 && (p < 10000 || p >= lo) {
			t.Fatalf("port %d is not in [10000, %d): a client socket could take it before it is bound", p, lo)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}
