// Package hook runs an operator's configured executable at a fixed point of
// a slot replacement (agent) or of a fleet rollout (coordinator). The
// executable is run directly from its argv list, never through a shell, with
// a minimal environment (PATH plus the HAROLL_* variables the caller names),
// in its own process group that is killed at the timeout and after it
// exits, and with the tail of its output kept. The package owns only the
// running: it logs nothing; callers log, report and decide what a failure
// means.
package hook
