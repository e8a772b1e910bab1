// Package agent owns a host's slots (one HAProxy backend/server paired with
// one Docker container) and replaces their containers one at a time without
// losing a request: preflight, drain, replace, health gate, restore, and a
// rollback that gives traffic back to the old container when anything fails
// after draining. Operators' hooks (HooksConfig, run by internal/hook) may
// veto a slot before it is touched and check the new container before it
// gets traffic.
//
// It declares the few HAProxy and Docker calls it needs (HAProxy, Docker) and
// is driven by plain methods (Redeploy, Status); the CLI and, later, the gRPC
// service are thin adapters over them.
package agent
