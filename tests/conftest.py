import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

# Tests are CPU-only and deterministic.
torch.use_deterministic_algorithms(True, warn_only=True)
