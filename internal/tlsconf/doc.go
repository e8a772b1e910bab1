// Package tlsconf builds the TLS configurations of haroll's TCP API: the agent serves TLS 1.3 and
// requires a client certificate signed by the CA it trusts (mutual TLS), and the coordinator presents
// its own certificate and trusts only that CA. It also decides whether an address is on loopback,
// the only place plaintext TCP is ever allowed.
package tlsconf
