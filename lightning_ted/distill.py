"""Knowledge distillation on pruned data (arXiv 2403.07854): a per-sample loss any method can prune with.

Training on a pruned subset loses the information in the dropped samples; a teacher trained on all data
carries some of it in its soft labels. ``distillation_loss`` mixes the hard-label cross-entropy with the
temperature-scaled KL divergence to the teacher, per sample, so it goes straight into ``pruned_loss``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def distillation_loss(
    logits: Tensor, targets: Tensor, teacher_logits: Tensor, weight: float = 0.5, temperature: float = 4.0
) -> Tensor:
    """Per-sample ``(1 - weight) CE(logits, y) + weight T^2 KL(softmax(teacher/T) || softmax(logits/T))``.

    ``weight`` = 0 is plain cross-entropy; the ``T^2`` factor keeps the soft term's gradient scale
    independent of the temperature (Hinton et al. 2015).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if teacher_logits.shape != logits.shape:
        raise ValueError(
            f"teacher logits have shape {tuple(teacher_logits.shape)} but the student's have {tuple(logits.shape)}"
        )
    hard = F.cross_entropy(logits, targets, reduction="none")
    if weight == 0.0:
        return hard
    log_student = F.log_softmax(logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    soft = (log_teacher.exp() * (log_teacher - log_student)).sum(-1) * temperature**2
    return (1.0 - weight) * hard + weight * soft
