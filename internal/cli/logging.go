package cli

import (
	"io"
	"log/slog"
	"os"

	"github.com/mattn/go-isatty"
)

// Log formats accepted by --log-format.
const (
	logFormatAuto = "auto" // text on a terminal, JSON otherwise
	logFormatJSON = "json"
	logFormatText = "text"
)

// newLogHandler returns the handler every haroll log line goes through, at
// level and above. Format "json" writes one JSON object per line (what
// journald, a log shipper or a file wants), "text" writes key=value lines for
// a person, and "auto" picks text when isTerminal says w is a terminal and
// JSON otherwise, so the agent under systemd logs JSON with no flag. An
// unknown format is an error naming the accepted ones.
func newLogHandler(w io.Writer, isTerminal bool, format string, level slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case logFormatAuto:
		if isTerminal {
			return slog.NewTextHandler(w, opts), nil
		}
		return slog.NewJSONHandler(w, opts), nil
	case logFormatJSON:
		return slog.NewJSONHandler(w, opts), nil
	case logFormatText:
		return slog.NewTextHandler(w, opts), nil
	}
	return nil, usageError("--log-format %q: want auto, json or text", format)
}

// parseLogLevel reads --log-level: debug, info, warn or error (slog's names,
// any case).
func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usageError("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// setupLogging makes slog's default logger write to stderr (through
// logOutput, which a live progress view may take over for a while) as the
// flags say. It is called once, before any subcommand runs.
func setupLogging(level, format string) error {
	l, err := parseLogLevel(level)
	if err != nil {
		return err
	}
	fd := os.Stderr.Fd()
	h, err := newLogHandler(logOutput, isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd), format, l)
	if err != nil {
		return err
	}
	slog.SetDefault(slog.New(h))
	return nil
}
