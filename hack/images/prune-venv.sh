#!/bin/sh
# Shrink an image's virtualenv after its dependencies are installed: VENV [PACKAGE...]
# - uninstall the named packages (installed only as dependencies of code the image never runs),
# - then pip and setuptools themselves (the code layer runs pip from its wheel),
# - remove the packages' own test suites (with their bytecode) and Cython sources.
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
rm -rf "$venv/share/man" "$venv/share/doc"
