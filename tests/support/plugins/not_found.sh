#!/bin/sh
# Test plugin: runs a command that does not exist; sh says so on stderr and exits 127.
wacht_no_such_command
