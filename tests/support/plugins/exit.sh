#!/bin/sh
# Test plugin: prints its second argument (if any) and exits with the first.
#   exit.sh CODE [TEXT]
[ $# -ge 2 ] && printf '%s\n' "$2"
exit "$1"
