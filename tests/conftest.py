"""Settings for the whole suite.

torch runs on one CPU thread, in this process and (through OMP_NUM_THREADS) in the
commands the tests start. The suite's models are tiny: threads cost more than they gain,
and on a busy machine they stall each other (tests/test_core_digits.py took 31 min with
torch's default of 2 threads on 2 loaded cores). A test that needs more sets them itself.
"""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

#: modules whose tests may run on different pytest-xdist workers: their module fixtures take
#: seconds, their tests long (a worker that gets one of them sets its module fixtures up again)
SPREAD_MODULES = {"test_kafka_scoring.py", "test_learning_loop.py", "test_onnx_engine.py"}


def pytest_collection_modifyitems(config, items):
    """Modules that hold a `slow` test run first: on the workers of scripts/test.sh, a long
    module handed out last would keep one worker busy while the others sit idle. The sort is
    stable: each module's tests stay together and in order."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile (scripts/test.sh): each module whole on one worker, so that a module
    fixture (a browser, a private broker, a trained model) starts once; but each test of
    SPREAD_MODULES goes on its own to whichever worker is free. (Not xdist_group marks with
    --dist loadgroup: pytest-xdist 3.8 tags the node ids through item._nodeid, which pytest 9.2
    no longer reads, so the marks are silently ignored.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SpreadSomeModules(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return nodeid if Path(module).name in SPREAD_MODULES else module

    return SpreadSomeModules(config, log)
