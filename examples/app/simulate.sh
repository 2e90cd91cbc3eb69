#!/bin/sh
# simulate.sh [-t steps] [-r range] [-n values]: print <values> random integers in [0, range),
# after sleeping <steps> seconds. Staged to the worker by Swift (the app runs `sh simulate.sh`).
steps=1 range=100 values=5
while [ $# -gt 0 ]; do
    case "$1" in
        -t) steps=$2; shift 2 ;;
        -r) range=$2; shift 2 ;;
        -n) values=$2; shift 2 ;;
        *) echo "simulate.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
echo "simulate.sh: host $(hostname) steps=$steps range=$range values=$values" >&2
[ "$steps" -gt 0 ] 2>/dev/null && sleep "$steps"
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
awk -v n="$values" -v r="$range" -v s="$seed" 'BEGIN { srand(s); for (i = 0; i < n; i++) print int(rand() * r) }'
