"""Non-finite losses and gradient norms during training: stop (default) or skip the update (docs/training.md).

A NaN/inf loss would otherwise go unnoticed: transformers' `logging_nan_inf_filter` replaces it by the
average of the earlier steps (0.0 when every step is NaN) and the optimizer writes NaN into the weights,
which are then saved and used by every later command.

Cost: per optimizer step one device-side `isfinite` of each micro-batch loss, combined with the gradient
norm that the Trainer already computes (for clipping and logging) into one flag, read once (one sync)
right before `optimizer.step()`; under several processes the flag is summed so that all ranks agree.

    guard = NonFiniteGuard("stop")
    loss = guard.observe_loss(loss)               # each micro-batch, after backward
    guard.observe_part("contrastive_loss", 3.2)   # the named parts (already Python floats)
    skip = guard.check_step(grad_norm, step=7, ...)   # raises LedError under "stop"
"""

from __future__ import annotations

import math

import torch

from led_hf.errors import LedError

POLICIES = ("stop", "skip")


class NonFiniteGuard:
    """What to do with a step whose loss or gradient norm is NaN/inf: "stop" raises a one-line LedError
    naming the step and the loss part before the update; "skip" drops the step's update (gradients
    cleared, so the optimizer leaves the weights and its moments as they are) and counts it."""

    def __init__(self, policy: str = "stop"):
        if policy not in POLICIES:
            raise LedError(f"on_nonfinite must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.policy = policy
        self._bad: torch.Tensor | None = None  # device-side flag of this step's micro-batch losses
        self._bad_parts: dict[str, list] = {}  # this step's named parts, read only when it is non-finite
        self.skipped_total = 0
        self._window_steps = 0
        self._window_skipped = 0

    def observe_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Remember (without syncing) whether this micro-batch loss is finite; under "skip" return it with a
        non-finite value replaced by 0, so that the Trainer's running loss stays finite (see `adjust_logs`)."""
        finite = torch.isfinite(loss.detach()).all()
        self._bad = ~finite if self._bad is None else self._bad | ~finite
        if self.policy == "skip":
            return torch.where(finite, loss, torch.zeros_like(loss))
        return loss

    def observe_part(self, name: str, value: torch.Tensor | float) -> None:
        """Keep this step's named part (a device tensor is not read here: no sync per part and step);
        the parts are only looked at when the step turns out non-finite."""
        self._bad_parts.setdefault(name, []).append(value)

    def check_step(self, grad_norm, step: int, accelerator=None, check_grad_norm: bool = True) -> bool:
        """True when this optimizer step must be skipped; raises LedError under "stop"."""
        flag = self._bad if self._bad is not None else torch.zeros((), dtype=torch.bool)
        grad_bad = None
        if check_grad_norm and grad_norm is not None:
            norm = torch.as_tensor(grad_norm, device=flag.device)
            grad_bad = ~torch.isfinite(norm)
            flag = flag | grad_bad
        if accelerator is not None and accelerator.num_processes > 1:  # every rank takes the same decision
            flag = accelerator.reduce(flag.to(accelerator.device, torch.int32), reduction="sum")
        bad = bool(flag.item())  # the one sync of the step
        loss_bad = bool(self._bad.item()) if bad and self._bad is not None else False
        observed, self._bad, self._bad_parts = self._bad_parts, None, {}
        self._window_steps += 1
        if not bad:
            return False
        if self.policy == "stop":
            parts = {
                name: value
                for name, values in observed.items()
                for value in map(float, values)
                if not math.isfinite(value)
            }
            what = [f"{name}={value}" for name, value in sorted(parts.items())]
            if loss_bad and not what:
                what.append("loss")
            if grad_bad is not None and bool(grad_bad.item()):
                what.append(f"gradient norm={float(torch.as_tensor(grad_norm))}")
            raise LedError(
                f"step {step}: non-finite {', '.join(what) or 'loss on another process'}; stopped before the "
                "update (check the learning rate and temperature, or pass --on_nonfinite skip to skip such batches)"
            )
        self.skipped_total += 1
        self._window_skipped += 1
        return True

    def adjust_logs(self, logs: dict) -> dict:
        """A training log line: the mean loss over the steps actually taken (skipped ones were added as 0),
        NaN when the whole window was skipped, and `skipped_batches` (all so far) once any was skipped."""
        steps, skipped = self._window_steps, self._window_skipped
        self._window_steps = self._window_skipped = 0
        if not self.skipped_total:
            return logs
        logs = dict(logs)
        if skipped and "loss" in logs:
            logs["loss"] = logs["loss"] * steps / (steps - skipped) if steps > skipped else float("nan")
        logs["skipped_batches"] = self.skipped_total
        return logs
