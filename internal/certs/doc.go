// Package certs makes the small PKI behind haroll's mutual TLS: one CA (ca.crt, ca.key) and, signed by
// it, a server certificate per agent (SANs for the names and addresses the coordinator dials) and a
// client certificate per coordinator (CommonName = the name agents allow). Keys are ECDSA P-256,
// written with mode 0600; nothing existing is overwritten unless the caller says Force.
package certs
