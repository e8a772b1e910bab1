#!/bin/sh
# haroll postinst: create the user the unit runs as, let it read /etc/haroll, and tell a running
# systemd about the unit. It never starts the agent: /etc/haroll/agent.yaml must be edited first.
set -e

case "$1" in
configure)
	if ! getent passwd haroll >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir /var/lib/haroll \
			--shell /usr/sbin/nologin --comment "haroll agent" haroll
	fi
	# First configuration only ($2 is empty): later an operator's ownership is left alone.
	if [ -z "$2" ]; then
		chgrp haroll /etc/haroll /etc/haroll/agent.yaml
		chmod 0750 /etc/haroll
		chmod 0640 /etc/haroll/agent.yaml
	fi
	for g in docker haproxy; do
		if ! getent group "$g" >/dev/null; then
			echo "haroll: group $g does not exist yet; haroll-agent.service needs it (SupplementaryGroups=docker haproxy): install Docker and HAProxy before starting the agent" >&2
		fi
	done
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		# An upgrade does not restart a running agent: a restart rolls back the slot in progress.
		if [ -n "$2" ] && systemctl is-active --quiet haroll-agent.service; then
			echo "haroll: haroll-agent still runs version $2: systemctl restart haroll-agent when no rollout runs" >&2
		fi
	fi
	;;
esac
exit 0
