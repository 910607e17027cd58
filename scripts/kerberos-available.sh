#!/usr/bin/env bash
# Exit 0 when zkrepl can be built with Kerberos (the gssapi feature) and its
# test can run here: the GSSAPI headers and library, libclang (to generate
# the bindings), and MIT krb5's KDC programs.
PATH="$PATH:/usr/sbin:/sbin"
[ -e /usr/include/gssapi/gssapi.h ] || exit 1
compgen -G "/usr/lib/*/libgssapi_krb5.so" >/dev/null || compgen -G "/usr/lib/libgssapi_krb5.so" >/dev/null || exit 1
compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null || compgen -G "/usr/lib/*/libclang*.so*" >/dev/null || exit 1
command -v krb5kdc >/dev/null && command -v kdb5_util >/dev/null && command -v kadmin.local >/dev/null
