import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

# fixtures by area: data (tiny official-format archives, real subsets, synthetic roots),
# engine and experiments (tiny configs, script runner)
pytest_plugins = ["fixtures_data", "fixtures_engine"]

# Tests are CPU-only and deterministic.
torch.use_deterministic_algorithms(True, warn_only=True)
