# shellcheck shell=bash
# sha256_of FILE...: "<sha256>  <file>" for each file that exists, like sha256sum; OpenSSL's digest where the host
# has it (several times faster on the release binaries, which the installs and the drift probe hash). Included by
# lib.sh.j2 and by the drift probe's command (components/drift.py).
sha256_of() {
  if command -v openssl >/dev/null; then
    openssl dgst -sha256 -r "$@" 2>/dev/null | sed 's/ [*]/  /'
  else
    sha256sum -- "$@" 2>/dev/null
  fi
}
