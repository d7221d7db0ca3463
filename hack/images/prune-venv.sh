#!/bin/sh
# Shrink an image's virtualenv after its dependencies are installed: VENV [PACKAGE...]
# - uninstall the named packages (installed only as dependencies of code the image never runs),
# - then pip and setuptools themselves (the code layer runs pip from its wheel),
# - remove the packages' own test suites (with their bytecode), Cython sources and C headers,
# - strip the shared objects' symbol tables and debug info (wheels ship many unstripped: 57 MB of
#   the trainer's); binutils is installed from the base's apt sources for that step only and
#   purged with its dependencies in the same layer (TJO_STRIP=0 skips it, e.g. on a base without apt).
# The bytecode of everything that stays is kept: the root filesystem is read-only at run time,
# so without it every start would compile pandas, scipy, ... again.
set -eu
venv=$1
shift
if [ "$#" -gt 0 ]; then "$venv/bin/pip" uninstall -q -y "$@"; fi
for tool in setuptools wheel pip; do
  if "$venv/bin/pip" show -q "$tool" 2>/dev/null; then "$venv/bin/pip" uninstall -q -y "$tool"; fi
done
site=$(echo "$venv"/lib/python3*/site-packages)
find "$site" -depth -type d \( -name tests -o -name testing_data -o -name test_data \) \
  -path "$site/*/*" -exec rm -rf {} +
find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' \) -delete
find "$site" -type d -name include -path '*/numpy/_core/include' -exec rm -rf {} +
rm -rf "$venv/share/man" "$venv/share/doc" "$venv/include" "$site"/numpy/distutils "$site"/numpy/f2py/src
if [ "${TJO_STRIP:-1}" != 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends binutils >/dev/null
  # Each stripped object must still load: strip corrupts some that auditwheel's patchelf rewrote
  # (numpy's OpenBLAS: "ELF load command address/offset not page-aligned"); those keep their symbols.
  loader=/nonexistent  # no known loader: nothing is stripped
  for l in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1; do if [ -e "$l" ]; then loader=$l; fi; done
  find "$site" -type f -name '*.so*' | while read -r so; do
    cp -p "$so" "$so.unstripped"
    if strip --strip-unneeded "$so" 2>/dev/null && "$loader" --list "$so" >/dev/null 2>&1; then
      rm "$so.unstripped"
    else
      mv "$so.unstripped" "$so"
    fi
  done
  apt-get purge -y -qq --auto-remove binutils >/dev/null
  rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/*
fi
