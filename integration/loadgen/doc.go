// Package loadgen sends a steady, open-loop stream of HTTP requests through
// HAProxy while a rollout runs and counts every request that did not come
// back 200 OK.
//
// It exists to prove the "zero lost requests" claim, so it avoids what would
// hide a failure: requests are POSTs without GetBody, which Go's
// http.Transport never re-sends on a broken keep-alive connection; requests
// the worker pool could not start on time are counted as Dropped instead of
// silently lowering the rate; and only loopback targets are accepted, so a
// mistyped URL can never load another machine.
//
// With Options.Clients the load comes from simulated clients, each with its
// own cookie jar, keep-alive connections, X-Client header and optionally its
// own loopback source address, to test HAProxy backends with persistence
// (cookie insert, stick tables); Result then says which server (X-Server)
// answered each client and how often a client switched servers.
package loadgen
