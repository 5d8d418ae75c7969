#!/bin/sh
# Test plugin: Nagios long output with valid and malformed perfdata, exit 1.
cat <<'OUT'
LOAD WARNING - lots to do | load1=1.5;1;2;0; 'disk used'=50%;80;90 broken=;; time=12ms;100;200;0;1000
second line of long output
third line | size=2KB;;;0;4 'it''s'=3c garbage count=7 mem=1.5MB;@1:2;~:3 nan=xyz
more perfdata=U;1;2 last=0.5
OUT
exit 1
