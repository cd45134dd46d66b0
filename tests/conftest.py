"""Settings for the whole suite.

torch runs on one CPU thread, in this process and (through OMP_NUM_THREADS) in the
commands the tests start. The suite's models are tiny: threads cost more than they gain,
and on a busy machine they stall each other (tests/test_core_digits.py took 31 min with
torch's default of 2 threads on 2 loaded cores). A test that needs more sets them itself.
"""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
