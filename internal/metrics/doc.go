// Package metrics exposes what haroll does as Prometheus metrics, from the
// outside of the code that does it: an agent.Observer fed with the agent's
// phase events and slot reports (Observer), decorators over the agent's
// HAProxy and Docker interfaces that count calls and errors (Calls), a
// collector that reads the slots' state at scrape time within a deadline
// (Slots), a consumer of the coordinator's rollout events (Rollout), and the
// HTTP server for GET /metrics (Server). Every metric is named haroll_* and
// lives on a registry of its own (NewRegistry), never the global one.
package metrics
