#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, start a local Kafka broker, run pytest, stop the broker.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup.sh

export KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
started_broker=0
if ! bash scripts/kafka-local.sh status >/dev/null 2>&1; then
  KAFKA_FRESH=1 bash scripts/kafka-local.sh start
  started_broker=1
fi
stop_broker() { [[ $started_broker == 1 ]] && bash scripts/kafka-local.sh stop >/dev/null || true; }
trap stop_broker EXIT

# The tests run on 3 pytest-xdist workers, each module whole on one worker except the few that
# tests/conftest.py spreads, the modules with `slow` tests first. 3 on 2 cores: many tests wait
# on Kafka or on the commands they started. AGAD_TEST_WORKERS=0 runs them all in this process.
# pytest exits 5 when it collected no test: that is a failure here too.
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 \
  -n "${AGAD_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder "$@"
