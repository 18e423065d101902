"""Batch contracts: training groups, encoding, cross-encoder pairs."""

from led_hf.collators.cross_encoder import CrossEncoderCollator
from led_hf.collators.encode import EncodeCollator, encode_passages, encode_texts
from led_hf.collators.train import TrainCollator

__all__ = ["CrossEncoderCollator", "EncodeCollator", "TrainCollator", "encode_passages", "encode_texts"]
