"""Fixtures of the engine tests: Apache Hadoop (see tests/conftest_hadoop.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from conftest_hadoop import *  # noqa: E402,F401,F403  fixtures + 'hadoop' marker
