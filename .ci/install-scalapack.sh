#!/usr/bin/env bash
# The ScaLAPACK engine's system packages (rf certify --engine scalapack, test group MathCore.ScaLAPACK):
# Debian's ScaLAPACK on Open MPI (BLACS included), mpirun, and OpenBLAS as the BLAS ScaLAPACK calls.
# Installed with apt-get when missing and we are root; otherwise says what is missing and leaves it to the
# tests, which fail when RF_REQUIRE_SCALAPACK=1 (as .ci/run sets it) and say why they skip otherwise.
set -euo pipefail
packages=(libscalapack-openmpi-dev openmpi-bin libopenblas0-pthread)
have() { command -v mpirun >/dev/null && ldconfig -p | grep 'libscalapack-openmpi\.so ' >/dev/null && ldconfig -p | grep libopenblas >/dev/null; }
if have; then echo "== scalapack: present ($(mpirun --version | head -1))"; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== scalapack: apt-get install ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  have || { echo "== scalapack: still missing after apt-get install" >&2; exit 1; }
else
  echo "== scalapack: missing, and not root with apt-get: install ${packages[*]} (the MathCore.ScaLAPACK tests will say so)" >&2
fi
