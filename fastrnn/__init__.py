"""fastrnn: fast CPU inference for recurrent networks trained in PyTorch.

Layers mirror torch.nn (RNN, LSTM, GRU), take NumPy arrays, and run hand-written
C kernels with OpenMP. See SPEC.md of the project for the full contract.
"""

__version__ = "0.1.0"

from . import _config
from ._config import config, get_num_threads, set_num_threads, show_config
from .errors import ModelFileError, UnsafeModelError
from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN
from .stream import Stream

from .io import load  # noqa: E402
from .models import (  # noqa: E402
    Attention,
    AttentionPool,
    Dropout,
    Embedding,
    LanguageModel,
    LayerNorm,
    Linear,
    Pool,
    ReLU,
    Seq2Seq,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    from_torch,
    load_model,
    pool,
    save_model,
)

_config._apply_env_isa_or_exit()

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Stream",
    "load",
    "ModelFileError",
    "UnsafeModelError",
    "config",
    "show_config",
    "set_num_threads",
    "get_num_threads",
    "__version__",
    # whole models (SPEC §7)
    "Embedding",
    "Linear",
    "LayerNorm",
    "Dropout",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "Softmax",
    "pool",
    "Pool",
    "AttentionPool",
    "Sequential",
    "from_torch",
    "Attention",
    "Seq2Seq",
    "LanguageModel",
    "save_model",
    "load_model",
]
