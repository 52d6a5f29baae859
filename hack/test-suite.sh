#!/usr/bin/env bash
# The last step of `make test`: every test, unit → integration → e2e in one pytest session.
# With the node (root, PROMPTALIAS_NODE != 0), tests/node runs in a second pytest session at the
# same time: it has its own testbed (a control plane with a real node), and much of its time is
# spent waiting for pods and probes, which the other session fills. On 2 cores the two still share
# the CPU, so the other session runs slower; docs/node.md has the measured times.
# Its output goes to a log file that is printed when both sessions are done; either failing fails.
# --durations: the slowest tests in the log, for whoever next makes the suite faster.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
# The unit/integration/e2e tests run in $PROMPTALIAS_TEST_WORKERS pytest-xdist workers (default 2),
# each with its own testbed; a test file stays on one worker (--dist loadfile), so its module
# fixtures are set up once. Most of the suite's time is waiting (analysis windows, probes,
# MLflow outages), so 2 workers on 2 cores finish sooner than one. 1 = no xdist.
workers=${PROMPTALIAS_TEST_WORKERS:-2}
parallel=()
if [ "$workers" != 1 ]; then parallel=(-n "$workers" --dist loadfile); fi

if [ "$(id -u)" != 0 ] || [ "${PROMPTALIAS_NODE:-1}" = 0 ]; then
  exec "$py" -m pytest tests "${parallel[@]}" --durations=25 "$@"
fi

log=$(mktemp -t promptalias-node-tests.XXXXXX.log)
echo "==> tests/node runs beside the other tests, in its own session on its own testbed (log: $log)"
started=$(date +%s)
"$py" -m pytest tests/node --durations=10 "$@" >"$log" 2>&1 &
node_pid=$!
trap 'kill -INT "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null' INT TERM

"$py" -m pytest tests --ignore=tests/node "${parallel[@]}" --durations=25 "$@"
main_rc=$?

if kill -0 "$node_pid" 2>/dev/null; then
  echo "==> waiting for tests/node (running $(( $(date +%s) - started ))s; log: $log)"
fi
wait "$node_pid"
node_rc=$?
trap - INT TERM
echo "==> tests/node (exit $node_rc, $(( $(date +%s) - started ))s):"
cat "$log"
if [ "$main_rc" != 0 ] || [ "$node_rc" != 0 ]; then
  echo "error: tests failed (unit/integration/e2e exit $main_rc, tests/node exit $node_rc); see above" >&2
  exit 1
fi
