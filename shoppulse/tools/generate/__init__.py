"""`shoppulse generate`: realistic synthetic traffic for the three source topics.

- `model`: scenarios, the funnel and knobs (`GeneratorConfig`), the catalogue, the plans.
- `simulator`: `TrafficGenerator`, the event timeline drawn from the model; `generate_events`.
- `runner`: `run` sends the timeline into a sink in real time or as fast as it takes it;
  `generate_traffic` into Kafka or a JSONL file until a duration or a signal (the command).

The same seed and config give the same events, ids included (offline mode; realtime mode
follows the wall clock).
"""

from .model import SCENARIOS, SOURCES, Funnel, GeneratorConfig
from .runner import generate_traffic, run
from .simulator import TrafficGenerator, generate_events

__all__ = [
    "SCENARIOS",
    "SOURCES",
    "Funnel",
    "GeneratorConfig",
    "TrafficGenerator",
    "generate_events",
    "generate_traffic",
    "run",
]
