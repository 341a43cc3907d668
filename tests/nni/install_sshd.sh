#!/bin/sh
# Installs Debian's OpenSSH server when `sshd` is missing (the NNI remote-training test needs one on
# 127.0.0.1). Run as root; the test calls it itself. Waits for a dpkg lock another job holds.
set -e
if command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install_sshd.sh: sshd is missing and this is not root: apt-get install openssh-server" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if apt-get update -q && apt-get install -y -q --no-install-recommends openssh-server; then
        exit 0
    fi
    echo "install_sshd.sh: apt-get failed (attempt $attempt; another apt may hold the lock), retrying" >&2
    sleep 15
done
exit 4
