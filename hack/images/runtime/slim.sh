#!/bin/sh
# The runtime base of the operator and trainer images: the project's Debian base without what only
# installing software needs. Run in `podman build --squash-all` (hack/build-images.sh), so the files
# are gone from the image, not hidden by a later layer. Removed (~60 MB of 134):
# - the package manager and what only it uses: apt, dpkg and its database, debconf, perl-base,
#   gpgv and the archive keyring, GnuTLS, libgcrypt, libsystemd, libseccomp, ...;
# - tools a container never runs: e2fsprogs, util-linux, login, passwd (useradd: the images
#   write their user into /etc/passwd themselves);
# - glibc's iconv modules (gconv: Python has its own codecs), pip's and setuptools' wheels for
#   ensurepip, and Python's pydoc topics and lib2to3.
# Files are removed by dpkg's own lists, without maintainer scripts (which need perl and dpkg).
# Kept: Python 3.11 and the libraries it loads, OpenSSL, libstdc++, CA certificates, tzdata,
# coreutils, bash, dash, grep, sed, tar (kubectl cp), findutils.
set -eu
packages="apt libapt-pkg6.0 gpgv debian-archive-keyring libgnutls30 libp11-kit0 libtasn1-6 libhogweed6
  libnettle8 libgcrypt20 libseccomp2 libxxhash0 libsystemd0 libudev1 liblz4-1 debconf perl-base
  e2fsprogs libext2fs2 libss2 logsave util-linux login passwd libsemanage2 libsemanage-common
  python3-pip-whl python3-setuptools-whl"
for package in $packages dpkg; do
  dpkg-query -L "$package" >"/tmp/$package.list"
done
for package in $packages dpkg; do  # dpkg's own files last: dpkg-query ran above
  while read -r path; do
    if [ ! -d "$path" ] && { [ -L "$path" ] || [ -f "$path" ]; }; then rm -f "$path"; fi  # never /bin or /lib64 (links to directories)
  done <"/tmp/$package.list"
  rm -f "/tmp/$package.list"
done
rm -rf /var/lib/dpkg /var/lib/apt /var/cache/apt /var/cache/debconf /var/log/* /etc/apt /etc/dpkg \
  /usr/share/perl5 /usr/lib/x86_64-linux-gnu/perl-base /usr/lib/x86_64-linux-gnu/gconv \
  /usr/lib/python3.11/pydoc_data /usr/lib/python3.11/lib2to3 /usr/share/python-wheels
# Anything left linking a removed library would fail at load time: fail the build instead.
missing=$(for f in /usr/bin/* /usr/sbin/* /usr/lib/x86_64-linux-gnu/*.so* /usr/lib/python3.11/lib-dynload/*.so; do
  [ -f "$f" ] && /lib64/ld-linux-x86-64.so.2 --list "$f" 2>/dev/null | grep 'not found' | sed "s|^|$f: |"
done || true)
if [ -n "$missing" ]; then echo "$missing" >&2; exit 1; fi
