#!/bin/sh
# Install Lumos into an image, one layer per call, least often changed first:
#   install.sh requirements   split pyproject.toml's dependencies into torch.txt and others.txt
#   install.sh torch          the lumos user, the virtualenv, torch.txt (gigabytes: its own layer)
#   install.sh deps           others.txt
#   install.sh app            the project itself, from /opt/build/src (reruns on a code change)
# pyproject.toml stays the one place that pins versions; the Dockerfile copies each list into the
# image just before its layer, so an edit elsewhere in pyproject.toml reinstalls nothing.
# EXTRA_CA_CERTS (PEM text, a build argument) is trusted on top of the system bundle during the
# call only, so a build behind a TLS-intercepting proxy or against a private mirror works without
# that CA staying in the image.
set -eu
build=/opt/build
venv=/opt/venv

requirements() { # torch|others: pyproject.toml's dependencies on either side of the layer split
	python3 - "$1" "$build/pyproject.toml" <<'PY'
import re, sys, tomllib
layer, pyproject = sys.argv[1:]
for requirement in tomllib.load(open(pyproject, "rb"))["project"]["dependencies"]:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
    if (name in {"torch", "torchvision"}) == (layer == "torch"):
        print(requirement)
PY
}

pip_install() {
	bundle=""
	if [ -n "${EXTRA_CA_CERTS:-}" ]; then
		bundle=$(mktemp)
		cat /etc/ssl/certs/ca-certificates.crt >"$bundle"
		printf '%s\n' "$EXTRA_CA_CERTS" >>"$bundle"
		export PIP_CERT="$bundle"
	fi
	"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check "$@"
	[ -z "$bundle" ] || rm -f "$bundle"
}

case "$1" in
requirements)
	requirements torch >"$build/torch.txt"
	requirements others >"$build/others.txt"
	;;
torch)
	groupadd --system --gid 10001 lumos
	useradd --system --uid 10001 --gid lumos --home-dir /app --no-create-home lumos
	install -d -o lumos -g lumos /app /app/runs /app/data
	python3 -m venv "$venv"
	pip_install -r "$build/torch.txt"
	;;
deps)
	pip_install -r "$build/others.txt"
	;;
app)
	pip_install --no-deps "$build/src"
	rm -rf "$build/src"
	;;
*)
	echo "usage: install.sh requirements|torch|deps|app" >&2
	exit 2
	;;
esac
