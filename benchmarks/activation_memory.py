"""Counting the activation memory of a training step: what autograd saves for backward, in bytes.

Used by benchmarks/bench_grad_cache.py (its `activations MB` column) and by tests/test_grad_cache.py
(activation memory falls with the GradCache chunk size):

    counter = SavedActivations()
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        loss.backward()   # or a whole training step
    counter.peak          # the most bytes held at once
"""

from __future__ import annotations

import weakref

import torch


class SavedActivations:
    """Bytes of the non-parameter tensors autograd keeps for backward: the current and the peak total."""

    def __init__(self):
        self.current = self.peak = 0

    def pack(self, tensor):
        if isinstance(tensor, torch.nn.Parameter) or (tensor.is_leaf and tensor.requires_grad):
            return tensor
        holder = _Held(tensor)
        size = tensor.numel() * tensor.element_size()
        self.current += size
        self.peak = max(self.peak, self.current)
        # a saved tensor is released when autograd drops its packed holder (after backward uses it)
        weakref.finalize(holder, self._release, size)
        return holder

    def _release(self, size):
        self.current -= size

    @staticmethod
    def unpack(packed):
        return packed.tensor if isinstance(packed, _Held) else packed


class _Held:
    def __init__(self, tensor):
        self.tensor = tensor
