// Package harness sets up what haroll's end-to-end tests run against on a single machine: test app
// images built FROM scratch, containers, HAProxy instances (a real haproxy child process with its
// runtime API socket) and free loopback ports. It is shared by the integration tests and the demo:
// no non-test file depends on package testing.
package harness
