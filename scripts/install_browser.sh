#!/usr/bin/env bash
# Install the headless browser the UI tests drive: Debian's `chromium` and `chromium-driver`.
#
#   bash scripts/install_browser.sh          # idempotent: does nothing when both are installed
#
# Everything comes from apt (Debian's packages): Selenium is pointed at /usr/bin/chromium and
# /usr/bin/chromedriver, so nothing is downloaded at test time (Selenium Manager stays offline).
# `apt-get update` runs only when needed: when the package lists are missing, or an install from
# the lists we have fails (stale lists name .deb versions the mirror no longer has).
set -euo pipefail

PACKAGES=(chromium chromium-driver)
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

info() { printf 'install_browser: %s\n' "$*" >&2; }
die() { printf 'install_browser: error: %s\n' "$*" >&2; exit 1; }

installed() {
    [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] || return 1
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || return 1
    done
}

if installed; then
    info "already installed: $("$CHROMIUM" --version 2>/dev/null || echo chromium), $("$CHROMEDRIVER" --version 2>/dev/null | head -n1 || echo chromedriver)"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install Debian's 'chromium' and 'chromium-driver' packages by hand"
SUDO=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install Debian's 'chromium' and 'chromium-driver' packages"
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

apt_install() {
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
}

lists_present() {
    compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null
}

if lists_present && apt_install; then
    :
else
    info "running apt-get update (package lists missing or stale)"
    "${SUDO[@]}" apt-get update -q
    apt_install
fi

installed || die "apt-get finished but $CHROMIUM or $CHROMEDRIVER is missing"
info "installed: $("$CHROMIUM" --version 2>/dev/null), $("$CHROMEDRIVER" --version 2>/dev/null | head -n1)"
