"""led-hf: train lexicon-enlightened dense retrievers (LED) with the HuggingFace Trainer."""

__version__ = "0.1.0"

from led_hf.errors import InputError, LedError  # noqa: E402

__all__ = ["InputError", "LedError", "__version__"]
