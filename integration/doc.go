// Package integration holds haroll's end-to-end tests: a real HAProxy 2.6 and
// a real Docker engine, test app images built FROM scratch, a load generator
// sending requests through HAProxy during every replacement, and the haroll
// binary run as an operator would run it.
package integration
