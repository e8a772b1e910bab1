package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/integration/harness"
	"github.com/haroll/haroll/integration/loadgen"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// failuresWhere sums the counts of res's failure descriptions ("EOF x3",
// "slow: 503 Service Unavailable x1") for which match holds; match sees the
// description without the "slow: " mark and the count.
func failuresWhere(res loadgen.Result, match func(desc string) bool) int64 {
	var sum int64
	for _, e := range res.Errors {
		i := strings.LastIndex(e, " x")
		if i < 0 {
			continue
		}
		n, err := strconv.ParseInt(e[i+2:], 10, 64)
		if err != nil {
			continue
		}
		if match(strings.TrimPrefix(e[:i], "slow: ")) {
			sum += n
		}
	}
	return sum
}

// httpStatus reports whether a failure is an HTTP status (a 5xx from
// HAProxy or the app) rather than a transport error.
func httpStatus(desc string) bool { return desc != "" && desc[0] >= '1' && desc[0] <= '5' }

// waitDrainStarts waits until server i of h is at weight 0.
func waitDrainStarts(t *testing.T, h *harness.Host, i int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if stats, err := h.Servers(context.Background()); err == nil && stats[i].Weight == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server %d was never drained", i)
}
