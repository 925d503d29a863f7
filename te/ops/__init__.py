"""te.ops: the operator library (what TVM calls TOPI).

Every operator is a compute, a default schedule that is fast without tuning, and (for the
compute-heavy ones, the anchors conv2d/matmul/dense) implementations registered in
te.ops.registry: each algorithm's knobs, compute, schedule and weight layout, which the model
compiler, the task extractor and the tuner all ask.
"""
from .conv2d import conv2d, conv2d_nchw
from .depthwise import depthwise_conv2d_nchw
from . import winograd  # noqa: F401  (registers the conv2d_winograd schedule)
from .conv2d_nchwc import conv2d_NCHWc, pack_conv_weight, pack_nchwc, unpack_nchwc
from .matmul import batch_matmul, dense, dense_packed, matmul, pack_dense_weight, schedule_matmul
from .schedule import schedule
from . import implementations, registry  # noqa: F401  (the anchors' implementations and their templates)
from .elementwise import *  # noqa: E402,F401,F403  (broadcasting binary ops, unary ops, activations)
from .fastmath import *  # noqa: E402,F401,F403  (vectorizable exp/tanh/erf/sigmoid expressions)
from .injective import *  # noqa: E402,F401,F403  (schedule_injective)
from .nn import *  # noqa: E402,F401,F403  (softmax, log_softmax, layer_norm, batch_norm, lrn)
from .pool import *  # noqa: E402,F401,F403  (max/avg/global pooling)
from .reduction import *  # noqa: E402,F401,F403  (sum, mean, max, min, prod)
from .transform import *  # noqa: E402,F401,F403  (pad, transpose, reshape, concat, slice, resize...)
from .topk import topk  # noqa: E402
from .einsum import EinsumError, einsum  # noqa: E402
from .conv_transpose import conv_transpose  # noqa: E402
from .scatter import scatter_elements, scatter_nd  # noqa: E402
from .grid_sample import grid_sample  # noqa: E402
from .rnn import gru_cell_output, gru_reset_hidden, lstm_cell_output, lstm_cell_state  # noqa: E402

__all__ = ["matmul", "dense", "batch_matmul", "schedule", "schedule_matmul", "conv2d", "conv2d_nchw",
           "depthwise_conv2d_nchw", "conv2d_NCHWc", "pack_nchwc", "unpack_nchwc", "pack_conv_weight",
           "dense_packed", "pack_dense_weight", "topk", "einsum", "EinsumError", "conv_transpose",
           "scatter_nd", "scatter_elements", "grid_sample", "lstm_cell_state", "lstm_cell_output",
           "gru_reset_hidden", "gru_cell_output"]
__all__ += (elementwise.__all__ + fastmath.__all__ + injective.__all__ + nn.__all__  # noqa: F405
            + pool.__all__ + reduction.__all__ + transform.__all__)  # noqa: F405
