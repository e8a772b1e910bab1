package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestWeightParsesCurrentAndInitial(t *testing.T) {
	_, c := newFakeUnix(t, func(string) string { return "0 (initial 7)" })
	cur, initial, err := c.Weight(context.Background(), "app", "app1")
	if err != nil || cur != 0 || initial != 7 {
		t.Fatalf("got %d, %d, %v; want 0, 7, nil", cur, initial, err)
	}
}

func TestSetWeightReadsTheValueBack(t *testing.T) {
	weight := "7 (initial 7)"
	f, c := newFakeUnix(t, func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "set weight"):
			return "" // HAProxy answers nothing on success
		case strings.HasPrefix(cmd, "get weight"):
			return weight
		}
		return "[3]: Unknown command."
	})
	if err := c.SetWeight(context.Background(), "app", "app1", 7); err != nil {
		t.Fatal(err)
	}
	if got := f.seen(); got[0] != "set weight app/app1 7" || got[1] != "get weight app/app1" {
		t.Fatalf("sent %q", got)
	}
	if err := c.SetWeight(context.Background(), "app", "app1", 0); !errors.Is(err, ErrMismatch) {
		t.Fatalf("a weight that did not change: got %v, want ErrMismatch", err)
	}
}

func TestAnErrorSeverityReplyIsMappedToASentinel(t *testing.T) {
	_, c := newFakeUnix(t, func(string) string { return recorded(t, "no_such_server.txt") })
	if err := c.SetWeight(context.Background(), "app", "nope", 0); !errors.Is(err, ErrNoSuchServer) {
		t.Fatalf("got %v, want ErrNoSuchServer", err)
	}
}

func TestSetAddrWithAnInvalidAddressWarningIsAnError(t *testing.T) {
	// HAProxy reports a bad address as a [4] notice, and leaves the old one.
	_, c := newFakeUnix(t, func(cmd string) string {
		if strings.HasPrefix(cmd, "set server") {
			return recorded(t, "set_addr_invalid.txt")
		}
		return recorded(t, "show_stat_app.csv")
	})
	err := c.SetAddr(context.Background(), "app", "app1", "10.0.0.9", 80)
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "Invalid addr") {
		t.Fatalf("got %v, want ErrMismatch quoting HAProxy", err)
	}
}

func TestSetAddrAcceptsTheChangedNoticeWhenTheReadBackMatches(t *testing.T) {
	_, c := newFakeUnix(t, func(cmd string) string {
		if strings.HasPrefix(cmd, "set server") {
			return recorded(t, "set_addr_changed.txt")
		}
		return strings.ReplaceAll(recorded(t, "show_stat_app.csv"), "127.0.0.1:18555", "127.0.0.2:18555")
	})
	if err := c.SetAddr(context.Background(), "app", "app1", "127.0.0.2", 18555); err != nil {
		t.Fatal(err)
	}
}

func TestSetAddrRefusesSomethingThatIsNotAnIP(t *testing.T) {
	f, c := newFakeUnix(t, func(string) string { return "" })
	if err := c.SetAddr(context.Background(), "app", "app1", "1.2.3.4.5", 80); err == nil {
		t.Fatal("accepted an invalid IP")
	}
	if len(f.seen()) != 0 {
		t.Fatalf("sent %q for an invalid address", f.seen())
	}
}

func TestNamesThatWouldInjectCommandsAreRefusedBeforeAnythingIsSent(t *testing.T) {
	f, c := newFakeUnix(t, func(string) string { return "" })
	for _, bad := range []string{"app;shutdown sessions server app/app1", "app 1", "app\n1", "", "a/b"} {
		if err := c.SetWeight(context.Background(), bad, "app1", 1); !errors.Is(err, ErrInvalidName) {
			t.Errorf("backend %q: got %v, want ErrInvalidName", bad, err)
		}
		if err := c.SetWeight(context.Background(), "app", bad, 1); !errors.Is(err, ErrInvalidName) {
			t.Errorf("server %q: got %v, want ErrInvalidName", bad, err)
		}
	}
	if len(f.seen()) != 0 {
		t.Fatalf("sent %q", f.seen())
	}
}

func TestSetStateReadsTheAdminStateBack(t *testing.T) {
	admin := recorded(t, "servers_state_drain.txt")
	f, c := newFakeUnix(t, func(cmd string) string {
		if strings.HasPrefix(cmd, "show servers state") {
			return admin
		}
		return ""
	})
	if err := c.SetState(context.Background(), "app", "app1", StateDrain); err != nil {
		t.Fatal(err)
	}
	if got := f.seen(); got[0] != "set server app/app1 state drain" {
		t.Fatalf("sent %q", got)
	}
	if err := c.SetState(context.Background(), "app", "app1", StateReady); !errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v, want ErrMismatch", err)
	}
	if err := c.SetState(context.Background(), "app", "app1", State("bogus")); err == nil {
		t.Fatal("accepted state bogus")
	}
}

func TestParseAdminTellsDrainAndMaintApart(t *testing.T) {
	for file, want := range map[string]Admin{
		"servers_state_drain.txt": {State: StateDrain, Checked: true},
		"servers_state_maint.txt": {State: StateMaint, Checked: true},
	} {
		got, err := parseAdmin(recorded(t, file), "app", "app1")
		if err != nil || got != want {
			t.Errorf("%s: got %+v, %v; want %+v", file, got, err, want)
		}
	}
	got, err := parseAdmin(recorded(t, "servers_state_drain.txt"), "app", "app3")
	if err != nil || got != (Admin{State: StateReady, Checked: false}) {
		t.Errorf("app3 (no check): got %+v, %v", got, err)
	}
	if _, err := parseAdmin(recorded(t, "servers_state_drain.txt"), "app", "nope"); !errors.Is(err, ErrNoSuchServer) {
		t.Errorf("unknown server: %v", err)
	}
}

func TestForceHealthDownChecksTheCounterWasReset(t *testing.T) {
	_, c := newFakeUnix(t, func(cmd string) string {
		if strings.HasPrefix(cmd, "show stat") {
			return recorded(t, "show_stat_health_down.csv")
		}
		return ""
	})
	if err := c.ForceHealthDown(context.Background(), "app", "app1"); err != nil {
		t.Fatal(err)
	}
}

func TestUnicodeSpacesAndControlCharactersAreRefusedInNames(t *testing.T) {
	for _, bad := range []string{"app\u0085", "app\u00a0x", "a\u2028b"} {
		if err := ValidateName("server", bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSetAddrWaitsForHAProxy30ToShowTheNewAddress(t *testing.T) {
	// HAProxy 3.0 answers "port changed" and shows the old address for a
	// moment (seen in the integration tests).
	reads := 0
	_, c := newFakeUnix(t, func(cmd string) string {
		if strings.HasPrefix(cmd, "set server") {
			return recorded(t, "haproxy-3.0/set_addr_changed.txt")
		}
		reads++
		if reads < 3 {
			return recorded(t, "show_stat_app.csv")
		}
		return strings.ReplaceAll(recorded(t, "show_stat_app.csv"), "127.0.0.1:18555", "127.0.0.2:18555")
	})
	if err := c.SetAddr(context.Background(), "app", "app1", "127.0.0.2", 18555); err != nil {
		t.Fatal(err)
	}
	if reads < 3 {
		t.Fatalf("read the address %d times", reads)
	}
}

func TestLeaveMaintSendsStateAndHealthDownOnOneLineAndReadsBoth(t *testing.T) {
	f, c := newFakeUnix(t, func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "set server"):
			return recorded(t, "leave_maint_health_down.txt")
		case strings.HasPrefix(cmd, "show servers state"):
			return recorded(t, "servers_state_maint_health_down.txt")
		}
		return recorded(t, "show_stat_maint_health_down.csv")
	})
	if err := c.LeaveMaint(context.Background(), "app", "app1", StateReady); err != nil {
		t.Fatal(err)
	}
	if got := f.seen()[0]; got != "set server app/app1 state ready; set server app/app1 health down" {
		t.Fatalf("sent %q", got)
	}
	if err := c.LeaveMaint(context.Background(), "app", "app1", StateMaint); !errors.Is(err, ErrCommand) {
		t.Fatalf("to maint: got %v", err)
	}
}

func TestLeaveMaintReportsAnErrorOfTheSecondCommand(t *testing.T) {
	_, c := newFakeUnix(t, func(cmd string) string { return "\n[3]: No such server.\n" })
	if err := c.LeaveMaint(context.Background(), "app", "app1", StateReady); !errors.Is(err, ErrNoSuchServer) {
		t.Fatalf("got %v, want ErrNoSuchServer", err)
	}
}
