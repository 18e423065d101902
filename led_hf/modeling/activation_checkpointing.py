"""Activation (gradient) checkpointing for the wrapper encoders, as the Trainer asks for it.

`--gradient_checkpointing true` (or `--activation_checkpointing true`) makes `Trainer.__init__` call, by
transformers version,

    5.17:  model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=..., every_n_layers=.., offload=..)
    5.24:  model.activation_checkpointing_enable(activation_checkpointing_kwargs=..., every_n_layers=.., offload=..)

DenseEncoder and SpladeEncoder are plain `nn.Module`s around transformers backbones: this mixin takes
either call and forwards it to each backbone, through whichever of the two methods the installed
transformers version gives the backbone. Checkpointing recomputes each layer's forward in the backward
pass (same dropout masks: the RNG state is restored), trading ~30% more compute for activations that
no longer grow with the number of layers.
"""

from __future__ import annotations

from torch import nn


class ActivationCheckpointing:
    """Mixin for an `nn.Module` whose `checkpointed_backbones()` are transformers `PreTrainedModel`s."""

    def checkpointed_backbones(self) -> list[nn.Module]:
        raise NotImplementedError

    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Checkpoint every `every_n_layers`-th layer of each backbone; `activation_checkpointing_kwargs` go to
        `torch.utils.checkpoint.checkpoint` (default: non-reentrant)."""
        extra = {}
        if every_n_layers != 1:
            extra["every_n_layers"] = every_n_layers
        if offload:
            extra["offload"] = offload
        for backbone in self.checkpointed_backbones():
            if hasattr(backbone, "activation_checkpointing_enable"):
                backbone.activation_checkpointing_enable(
                    activation_checkpointing_kwargs=activation_checkpointing_kwargs, **extra
                )
            else:
                backbone.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs=activation_checkpointing_kwargs, **extra
                )

    def gradient_checkpointing_enable(
        self,
        gradient_checkpointing_kwargs: dict | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """The name transformers <= 5.17 calls; the same as `activation_checkpointing_enable`."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, every_n_layers, offload)

    def activation_checkpointing_disable(self) -> None:
        for backbone in self.checkpointed_backbones():
            if hasattr(backbone, "activation_checkpointing_disable"):
                backbone.activation_checkpointing_disable()
            else:
                backbone.gradient_checkpointing_disable()

    gradient_checkpointing_disable = activation_checkpointing_disable

    @property
    def is_activation_checkpointing(self) -> bool:
        return any(_checkpointing(backbone) for backbone in self.checkpointed_backbones())

    is_gradient_checkpointing = is_activation_checkpointing


def _checkpointing(backbone) -> bool:
    if hasattr(type(backbone), "is_activation_checkpointing"):
        return bool(backbone.is_activation_checkpointing)
    return bool(getattr(backbone, "is_gradient_checkpointing", False))
