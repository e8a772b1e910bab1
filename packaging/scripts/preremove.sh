#!/bin/sh
# haroll prerm: on removal, stop and disable the agent while its unit file is still there. An
# upgrade leaves it running (postinst says how to restart it).
set -e

if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	# SIGTERM: the agent rolls back the slot in progress before it exits (TimeoutStopSec).
	systemctl stop haroll-agent.service || true
	systemctl disable haroll-agent.service || true
fi
exit 0
