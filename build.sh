#!/usr/bin/env bash
# One entry point for a fresh machine with the .NET 10 SDK:
#   ./build.sh run    restore (paket + locked NuGet), build, run the main job
#   ./build.sh test   restore, build, run every property test (prints "N passed, N failed")
#   ./build.sh setup  restore and build only
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

case "${1:-}" in
  setup) setup ;;
  test)
    setup
    echo "== tests"
    dotnet run --project Properties -c "$configuration" --no-build -- "${@:2}" ;;
  run)
    setup
    echo "== main job"
    dotnet run --project Host -c "$configuration" --no-build -- "${@:2}" ;;
  *) echo "usage: ./build.sh run|test|setup [args...]" >&2; exit 2 ;;
esac
