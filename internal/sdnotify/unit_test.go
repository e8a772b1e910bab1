package sdnotify_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const unitFile = "../../configs/haroll-agent.service"

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

func TestTheAgentUnitIsANotifyServiceThatRunsHarollAgent(t *testing.T) {
	svc := readUnit(t, unitFile)["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	if svc["Type"] != "notify" {
		t.Errorf("Type=%q, want notify: the agent calls sdnotify.Ready", svc["Type"])
	}
	args := strings.Fields(svc["ExecStart"])
	if len(args) < 2 || filepath.Base(args[0]) != "haroll" || args[1] != "agent" {
		t.Errorf("ExecStart=%q, want it to run `haroll agent`", svc["ExecStart"])
	}
	if !filepath.IsAbs(args[0]) {
		t.Errorf("ExecStart binary %q is not an absolute path", args[0])
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
