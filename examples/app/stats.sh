#!/bin/sh
# stats.sh FILE...: print the average of all numbers in the simulation outputs.
echo "stats.sh: host $(hostname) averaging $# files" >&2
cat "$@" | awk '{ sum += $1; n++ } END { if (n == 0) { print "stats.sh: no values" > "/dev/stderr"; exit 1 } printf "%.2f\n", sum / n }'
