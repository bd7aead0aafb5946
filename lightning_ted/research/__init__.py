"""Research-only variants, kept reproducible for ``experiments/`` but off the user's path."""

from lightning_ted.core.adaptive_schedules import GeneralizationBudgetSchedule, GeneralizationToleranceSchedule
from lightning_ted.research.ted_variants import TEDVariant

__all__ = ["GeneralizationBudgetSchedule", "GeneralizationToleranceSchedule", "TEDVariant"]
