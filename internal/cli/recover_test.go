package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/haroll/haroll/agent"
)

func wedgedPending() agent.Pending {
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	return agent.Pending{
		Journal: &agent.Entry{Slot: "app-1", Image: "app:broken", OldImage: "app:v1", Phase: agent.PhaseStart, OldID: "aaaaaaaaaaaaaaaa",
			NewID: "bbbbbbbbbbbbbbbb", Weight: 7, State: "ready", Addr: "127.0.0.1:20001", DrainMode: "weight", Drained: true, Maint: true,
			Stopped: true, Renamed: true, Started: at, Failure: "rollback incomplete: the old container is gone\nrestore weight/state: left in maintenance", FailedAt: at},
		Old:     &agent.ContainerState{ID: "aaaaaaaaaaaaaaaa", State: "gone"},
		New:     &agent.ContainerState{ID: "bbbbbbbbbbbbbbbb", Name: "app-1", Image: "app:broken", State: "exited"},
		Server:  &agent.ServerState{Backend: "app", Server: "srv-app-1", Status: "MAINT", Admin: "maint", Weight: 7, Addr: "127.0.0.1:20001"},
		Recover: "it cannot roll back: the old container aaaaaaaaaaaa is gone",
		Forward: []string{"`haroll redeploy --slot app-1 --image <a working image>` takes the slot over", "`haroll recover --abandon` ..."},
	}
}

func TestRecoverStatusPrintsTheJournalWhatIsThereAndWhatRecoverWouldDo(t *testing.T) {
	var b bytes.Buffer
	printPending(&b, wedgedPending(), "/var/lib/haroll")
	out := b.String()
	for _, want := range []string{
		"pending: the replacement of slot app-1 by app:broken (from app:v1)",
		"phase start, started 2026-12-02T03:00:00Z, proven no",
		"before it: weight 7, state ready, addr 127.0.0.1:20001",
		"flags: drained maint old-stopped renamed",
		"WEDGED: the last recovery failed at 2026-12-02T03:00:00Z",
		"    restore weight/state: left in maintenance",
		"old container  aaaaaaaaaaaa - - gone",
		"new container  bbbbbbbbbbbb app-1 app:broken exited",
		"server         app/srv-app-1 status MAINT, admin maint, weight 7, addr 127.0.0.1:20001",
		"haroll recover would: it cannot roll back",
		"  - `haroll redeploy --slot app-1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--status output lacks %q:\n%s", want, out)
		}
	}
}

func TestRecoverStatusWithNoJournalSaysNothingIsPending(t *testing.T) {
	var b bytes.Buffer
	printPending(&b, agent.Pending{}, "/var/lib/haroll")
	if got := b.String(); got != "nothing pending: no replacement was cut off (no journal in /var/lib/haroll)\n" {
		t.Fatalf("got %q", got)
	}
}

func TestRecoverAbandonPrintsWhatItLeftAndTheStepsInOrder(t *testing.T) {
	var b bytes.Buffer
	printAbandoned(&b, agent.Abandoned{Pending: wedgedPending(), Next: []string{"app/srv-app-1 is in maintenance", "set server ... state ready"}})
	out := b.String()
	for _, want := range []string{"abandoned: the replacement of slot app-1 by app:broken", "new container  bbbbbbbbbbbb app-1 app:broken exited",
		"what to do now:\n  1. app/srv-app-1 is in maintenance\n  2. set server ... state ready\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--abandon output lacks %q:\n%s", want, out)
		}
	}
}

func TestRecoverStatusAndAbandonTogetherIsAUsageError(t *testing.T) {
	cmd := newRoot()
	cmd.SetArgs([]string{"recover", "--status", "--abandon"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "choose one") {
		t.Fatalf("got %v", err)
	}
}

func TestRecoverStatusPrintsTheHalvesOfABlueGreenRedeploy(t *testing.T) {
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	p := agent.Pending{Pairs: []agent.PairPending{{
		Kind: "surge",
		Journal: &agent.Entry{Slot: "web-1", Image: "app:v2", OldImage: "app:v1", Phase: agent.PhaseGate, OldID: "aaaaaaaaaaaaaaaa",
			NewID: "bbbbbbbbbbbbbbbb", Weight: 7, State: "ready", DrainMode: "weight", Drained: true, Renamed: true, StartFirst: true, Started: at,
			Pair: &agent.PairEntry{Live: "web1", Idle: "web1b", IdleWeight: 7}},
		Old:     &agent.ContainerState{ID: "aaaaaaaaaaaaaaaa", Name: "web-1-haroll-prev", Image: "app:v1", State: "running"},
		New:     &agent.ContainerState{ID: "bbbbbbbbbbbbbbbb", Name: "web-1", Image: "app:v2", State: "running"},
		Live:    &agent.ServerState{Backend: "web", Server: "web1", Status: "UP", Admin: "ready", Weight: 7, Addr: "127.0.0.1:18081"},
		Idle:    &agent.ServerState{Backend: "web", Server: "web1b", Status: "DOWN", Admin: "ready", Weight: 0, Addr: "127.0.0.1:18181"},
		Recover: "roll the new side back: web/web1b emptied into maintenance",
	}}}
	var b bytes.Buffer
	printPending(&b, p, "/var/lib/haroll")
	out := b.String()
	for _, want := range []string{
		"pending: the blue/green surge (new side coming up) of slot web-1 by app:v2 (from app:v1)",
		"old container  aaaaaaaaaaaa web-1-haroll-prev app:v1 running",
		"new container  bbbbbbbbbbbb web-1 app:v2 running",
		"old side       web/web1 status UP, admin ready, weight 7",
		"new side       web/web1b status DOWN, admin ready, weight 0",
		"haroll recover would: roll the new side back",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "nothing pending") {
		t.Errorf("a pending pair is not nothing:\n%s", out)
	}
}
