#!/usr/bin/env bash
# One entry point for a fresh machine with the .NET 10 SDK:
#   ./build.sh run    restore (paket + locked NuGet), build, run the main job
#   ./build.sh test   restore, build, run every property test (prints "N passed, N failed")
#   ./build.sh setup  restore and build only
#   ./build.sh deps   install the optional Debian packages (as root, or with passwordless sudo): OpenBLAS for the
#                     certificate's float64 kernels (docs/theory.md §3 "Which BLAS"); CI runs it first
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
configuration="${CONFIGURATION:-Release}"

setup() {
  echo "== restore: local tools (paket), paket.lock, NuGet lock files (locked mode)"
  dotnet tool restore
  dotnet paket restore
  dotnet restore ResearchFramework.sln --locked-mode
  echo "== build ($configuration; includes the libstdc++ compatibility step on Linux)"
  dotnet build ResearchFramework.sln -c "$configuration" --no-restore
}

# Debian packages the fast paths use; each is optional at run time (the code falls back and says so).
system_packages=(libopenblas0-pthread)

deps() {
  missing=()
  for p in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "== system packages: all present (${system_packages[*]})"; return; fi
  if ! command -v apt-get >/dev/null; then echo "== system packages: no apt-get; install ${missing[*]} by hand (optional)"; return; fi
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else echo "== system packages: not root; install ${missing[*]} (optional)"; return; fi
  fi
  echo "== system packages: installing ${missing[*]}"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

case "${1:-}" in
  deps) deps ;;
  setup) setup ;;
  test)
    setup
    echo "== tests"
    dotnet run --project Properties -c "$configuration" --no-build -- "${@:2}" ;;
  run)
    setup
    echo "== main job"
    dotnet run --project Host -c "$configuration" --no-build -- "${@:2}" ;;
  *) echo "usage: ./build.sh run|test|setup|deps [args...]" >&2; exit 2 ;;
esac
