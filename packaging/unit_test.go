package packaging

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// unitFile is the one unit file, for the package and for an install by hand.
const unitFile = "../configs/haroll-agent.service"

// readUnit returns the unit's keys per section; a key set twice keeps its last value, as systemd does
// for the keys checked here.
func readUnit(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string]string{}
	section := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			unit[section] = map[string]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", path, line)
			}
			unit[section][strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

func TestTheAgentUnitIsANotifyServiceThatRunsThePackagedHarollAgent(t *testing.T) {
	svc := readUnit(t, unitFile)["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	if svc["Type"] != "notify" {
		t.Errorf("Type=%q, want notify: the agent calls sdnotify.Ready", svc["Type"])
	}
	args := strings.Fields(svc["ExecStart"])
	if len(args) < 2 || args[0] != BinPath || args[1] != "agent" {
		t.Errorf("ExecStart=%q, want it to run `%s agent`, where the package puts the binary", svc["ExecStart"], BinPath)
	}
	if !slices.Contains(args, ConfigPath) {
		t.Errorf("ExecStart=%q does not name the packaged config %s", svc["ExecStart"], ConfigPath)
	}
	want := map[string]string{
		"Restart":          "always",
		"KillMode":         "mixed",
		"KillSignal":       "SIGTERM",
		"RuntimeDirectory": "haroll", // the agent's default socket is /run/haroll/agent.sock
		"StateDirectory":   "haroll", // the example state_dir is /var/lib/haroll
	}
	for k, v := range want {
		if svc[k] != v {
			t.Errorf("%s=%q, want %q", k, svc[k], v)
		}
	}
	if svc["TimeoutStopSec"] == "" {
		t.Error("no TimeoutStopSec: the default 90s may cut a slot's rollback short")
	}
	if svc["TimeoutStartSec"] == "" {
		t.Error("no TimeoutStartSec: the default 90s may cut the recovery of an interrupted slot short")
	}
}

func TestTheAgentUnitHasAWatchdogTheAgentCanFeed(t *testing.T) {
	svc := readUnit(t, unitFile)["Service"]
	raw := svc["WatchdogSec"]
	if raw == "" {
		t.Fatal("no WatchdogSec: a hung agent would never be restarted")
	}
	// systemd also takes a bare number of seconds; this unit writes a unit.
	d, err := time.ParseDuration(raw)
	if err != nil {
		t.Fatalf("WatchdogSec=%q: %v (write it like 30s)", raw, err)
	}
	// The agent pings every d/2; under 10s a busy host's scheduling hiccup
	// could cost a restart, over 5m a hung agent goes unnoticed too long.
	if d < 10*time.Second || d > 5*time.Minute {
		t.Errorf("WatchdogSec=%s, want between 10s and 5m", d)
	}
	if svc["NotifyAccess"] != "main" && svc["NotifyAccess"] != "all" {
		t.Errorf("NotifyAccess=%q: systemd would drop the agent's WATCHDOG=1", svc["NotifyAccess"])
	}
}

func TestSystemdAnalyzeFindsNothingWrongWithTheAgentUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// verify insists that ExecStart's binary exists: point it at a stand-in.
	dir := t.TempDir()
	bin := filepath.Join(dir, "haroll")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	execStart := regexp.MustCompile(`(?m)^ExecStart=\S+`)
	if !execStart.Match(data) {
		t.Fatal("no ExecStart= line")
	}
	data = execStart.ReplaceAll(data, []byte("ExecStart="+bin))
	unit := filepath.Join(dir, "haroll-agent.service")
	if err := os.WriteFile(unit, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runVerify(analyze, unit)
	// verify exits 0 on unknown keys and bad values and only prints them, so any line about this unit
	// counts; lines about the rest of the host (other units) do not.
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "haroll-agent.service") {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}
}

func runVerify(analyze, unit string) ([]byte, error) {
	var buf bytes.Buffer
	cmd := exec.Command(analyze, "verify", unit)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.Bytes(), err
}
