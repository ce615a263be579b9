#!/usr/bin/env bash
# Install the system packages the test suite uses, when they are missing. Idempotent; silent and
# instant (a `command -v` per package) when everything is there.
#
#   bubblewrap  isolation of the local sandbox (tests/sandboxes: the "bwrap" backend)
#   chromium    the trajectory viewer's browser test
#
# Exit status: 0 when everything is installed, or when it cannot be (not root, no passwordless
# sudo: a note on stderr, and the tests that need a package skip with the reason); 1 when
# apt-get failed (its log: /tmp/ci-setup.log).
set -uo pipefail

LOG=/tmp/ci-setup.log
say() { echo "ci-setup: $*" >&2; }

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    say "missing ${missing[*]}; run as root (or with passwordless sudo) to install them; the tests that need them skip"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} and there is no apt-get here; install them with the system's package manager"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" >>"$LOG" 2>&1
}
say "installing ${missing[*]} (log: $LOG)"
: >"$LOG"
# A machine whose image was saved in the middle of a package install refuses every apt-get until
# dpkg finishes what it was doing ("dpkg was interrupted, you must manually run 'dpkg --configure -a'").
if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ]; then
    say "finishing an interrupted dpkg run first (dpkg --configure -a)"
    "${SUDO[@]}" dpkg --configure -a >>"$LOG" 2>&1 || true
fi
# Try the package lists that are there first: an update costs seconds and needs the network.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || ! apt_install; then
    "${SUDO[@]}" apt-get update -qq -o DPkg::Lock::Timeout=120 >>"$LOG" 2>&1 && apt_install || {
        say "apt-get install ${missing[*]} failed: $(tail -n 3 "$LOG")"
        exit 1
    }
fi
exit 0
