// Package live shows a rollout's progress while it runs, without ever
// slowing it down.
//
// It owns two sinks for rollout.Executor.Events. Live redraws one compact
// view in place on a terminal (batches, the current step, hosts per phase,
// failures named, elapsed and estimated remaining time), from counters
// that the events only update. Plain writes rollout.Progress's lines, byte
// for byte, through an in-memory queue drained by one goroutine, for pipes,
// files and --output json. Neither does I/O in the Events callback, so a
// slow terminal or a full pipe never holds a step up.
package live
