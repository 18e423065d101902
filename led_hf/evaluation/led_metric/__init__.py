"""The `evaluate` metric module folder: `evaluate.load(METRIC_PATH)` loads `led_metric.py` from here, offline.

Importing this package does not import `evaluate`; `METRIC_PATH` is just the folder.
"""

from pathlib import Path

METRIC_PATH = str(Path(__file__).parent)
