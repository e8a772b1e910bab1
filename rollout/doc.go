// Package rollout is haroll's coordinator: it rolls an image over a fleet of
// agents. Plan is a pure function from hosts, slots and a Strategy to
// batches of slot-major steps; Executor drives the agents' gRPC API through
// that plan, checks every host before touching any, and stops before the
// next batch when failures pass the threshold. With a Store (a StateFile's
// FileStore, or an EtcdStore), the executor records every finished (host,
// slot) pair (State), and Resume goes on with a rollout whose coordinator
// died without asking those pairs again; the Store also holds the fleet
// lock (one rollout at a time), the canary decisions and the history
// index. Hooks run an operator's executables before the first batch and
// after the rollout. rollout knows the agents only through agentpb, never
// through the agent package's internals.
package rollout
