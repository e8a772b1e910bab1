package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// logOne writes one warning through the handler newLogHandler picks and
// returns the output.
func logOne(t *testing.T, isTerminal bool, format string, level slog.Level) string {
	t.Helper()
	var buf bytes.Buffer
	h, err := newLogHandler(&buf, isTerminal, format, level)
	if err != nil {
		t.Fatal(err)
	}
	slog.New(h).Warn("slot rolled back", "slot", "web-1", "container_id", "860a65dc4e2a")
	return buf.String()
}

func isJSONLine(t *testing.T, out string) bool {
	t.Helper()
	var m map[string]any
	if json.Unmarshal([]byte(out), &m) != nil {
		return false
	}
	if m["msg"] != "slot rolled back" || m["slot"] != "web-1" || m["container_id"] != "860a65dc4e2a" || m["level"] != "WARN" {
		t.Errorf("JSON line lacks a field: %s", out)
	}
	return true
}

func TestAutoLogsJSONWhenStderrIsNotATerminal(t *testing.T) {
	if out := logOne(t, false, "auto", slog.LevelInfo); !isJSONLine(t, out) {
		t.Errorf("want one JSON object, got %q", out)
	}
}

func TestAutoLogsTextOnATerminal(t *testing.T) {
	out := logOne(t, true, "auto", slog.LevelInfo)
	if isJSONLine(t, out) || !strings.Contains(out, `msg="slot rolled back" slot=web-1 container_id=860a65dc4e2a`) {
		t.Errorf("want a key=value text line, got %q", out)
	}
}

func TestAnExplicitFormatWinsOverTheTerminalRule(t *testing.T) {
	if out := logOne(t, true, "json", slog.LevelInfo); !isJSONLine(t, out) {
		t.Errorf("json on a terminal: got %q", out)
	}
	if out := logOne(t, false, "text", slog.LevelInfo); isJSONLine(t, out) || !strings.Contains(out, "level=WARN") {
		t.Errorf("text off a terminal: got %q", out)
	}
}

func TestLinesBelowTheLevelAreDropped(t *testing.T) {
	if out := logOne(t, false, "json", slog.LevelError); out != "" {
		t.Errorf("a warning at level error: got %q", out)
	}
}

func TestAnUnknownFormatIsAnErrorNamingTheChoices(t *testing.T) {
	_, err := newLogHandler(&bytes.Buffer{}, false, "logfmt", slog.LevelInfo)
	if err == nil || !strings.Contains(err.Error(), "want auto, json or text") {
		t.Fatalf("got %v", err)
	}
}

func TestLogLevelsAreSlogsNames(t *testing.T) {
	for s, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := parseLogLevel(s); err != nil || got != want {
			t.Errorf("parseLogLevel(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := parseLogLevel("verbose"); err == nil || !strings.Contains(err.Error(), "want debug, info, warn or error") {
		t.Errorf("verbose: got %v", err)
	}
}

func TestTheRootCommandRefusesABadLogFormatBeforeRunning(t *testing.T) {
	root := newRoot()
	root.SetArgs([]string{"--log-format", "xml", "version"})
	root.SetOut(&bytes.Buffer{})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("got %v", err)
	}
}
