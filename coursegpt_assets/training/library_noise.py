"""Known, harmless notices from the Hugging Face stack, silenced where our code loads models.

- bitsandbytes' CPU backend logs, on CPUs with AVX512-BF16, that the optional `kernels` package for its
  4-bit CPU matmul is missing. The CPU plan never quantises, so on a laptop the notice only alarms.
- peft reads transformers' deprecated `is_gradient_checkpointing` property for every PeftModel it
  builds, and transformers warns (FutureWarning) each time. The call is peft's, not ours.

Only these two messages are silenced; everything else from the libraries still reaches the logs.
"""

from __future__ import annotations

import logging
import warnings

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
GRADIENT_CHECKPOINTING_DEPRECATION = "`is_gradient_checkpointing` is deprecated"


class _DropKernelNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "gemm_4bit_forward" not in record.getMessage()


def silence_library_noise() -> None:
    """Call before importing transformers/peft/bitsandbytes (safe to call more than once)."""
    bnb_logger = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, _DropKernelNotice) for f in bnb_logger.filters):
        bnb_logger.addFilter(_DropKernelNotice())
    warnings.filterwarnings("ignore", message=GRADIENT_CHECKPOINTING_DEPRECATION, category=FutureWarning)
