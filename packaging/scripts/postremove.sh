#!/bin/sh
# haroll postrm: tell a running systemd that the unit is gone. The haroll user and
# /var/lib/haroll (the journal) are kept, as Debian does for system users and their data.
set -e

case "$1" in
remove | purge)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac
exit 0
