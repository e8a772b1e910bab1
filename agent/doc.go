// Package agent owns a host's slots (one HAProxy backend/server paired with
// one Docker container) and replaces their containers one at a time without
// losing a request: preflight, drain, replace, health gate, restore, and a
// rollback that gives traffic back to the old container when anything fails
// after draining.
//
// The drain is built for persistence: weight 0 (or DRAIN) moves the unpinned
// traffic, maintenance (MAINT) then takes the server out of every selection,
// cookie and stick-table persistence included, and the server is empty when
// HAProxy shows it in MAINT with no session and no queued request. No
// container HAProxy can still select is ever stopped; from the drain to the
// gate the server stays in MAINT (or forced down), leaving MAINT straight
// into `health down` on one command line (runtime.Client.LeaveMaint); and a
// guard re-applies all of it when HAProxy is reloaded, in every phase; a
// drain then waits for the old worker to exit, seen through the master CLI
// or, when HAProxy is proven to run in the agent's pid namespace, through its
// process (workers.go). Operators' hooks (HooksConfig, run by internal/hook) may
// veto a slot before it is touched and check the new container before it
// gets traffic.
//
// Fleet rollouts fence their requests (fence.go): the host remembers, in
// state_dir, the highest fence token it has seen and refuses older ones, so
// a coordinator that lost the fleet lock changes nothing; a fenced request
// claims the host, and a person's redeploy of a claimed host is refused
// unless it breaks the claim. Every slot result is appended to the host's
// history (history.go), and Pull brings an image onto the host without
// touching a slot.
//
// It declares the few HAProxy and Docker calls it needs (HAProxy, Docker) and
// is driven by plain methods (Redeploy, Status); the CLI and, later, the gRPC
// service are thin adapters over them.
package agent
