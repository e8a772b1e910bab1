// Package packaging builds haroll's Debian package with nfpm (as a library): the binary, the agent's
// systemd unit, a default agent config and the examples, and the maintainer scripts under
// scripts/. `make dist` runs it through ./packaging/cmd/dist. The haroll binary never imports this
// package, so nfpm stays out of it. The tests here also check the unit file, build the package and,
// as root, install it with dpkg, run the unit's command and purge it.
package packaging
