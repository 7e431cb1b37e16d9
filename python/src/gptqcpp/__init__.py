"""gptqcpp: GPTQModel's Python API over gptq.cpp's native library.

    from gptqcpp import GPTQModel, QuantizeConfig   # instead of: from gptqmodel import ...

No PyTorch: tokenizer, model runtime (CPU or CUDA), GPTQ quantization and evaluation are
the library's, the same code the `gptq` command runs.
"""

import os

# libgomp reads OMP_WAIT_POLICY once, when it loads with the extension below; spinning idle
# threads collapse throughput on a shared machine (core/omp_policy.h has the numbers), so
# the default is passive unless the user chose, as for the gptq program. (No effect when
# another package loaded libgomp first.)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from ._gptqcpp import __version__, cuda_device_count, default_backend, load_calibration
from ._config import QuantizeConfig
from ._model import GPTQCppModel, GPTQModel
from ._tokenizer import Tokenizer

__all__ = ["GPTQModel", "GPTQCppModel", "QuantizeConfig", "Tokenizer", "load_calibration", "default_backend",
           "cuda_device_count", "__version__"]
