"""TorchScript export, fp32 and dynamic int8.

``torch.jit.script`` (not ``trace``) compiles the models' own control flow, so batch and time
stay dynamic by construction; a check on a second input shape guards that anyway. int8 uses
``torch.ao.quantization.quantize_dynamic`` over ``nn.LSTM`` and ``nn.Linear`` (int8 weights,
activations quantised at run time); conv_lstm's ``Conv1d`` blocks and every BatchNorm stay fp32
(dynamic quantisation has no conv kernel; they are a small share of the work); stats_linear has
no LSTM, so its head ``Linear`` is all that int8 changes. torch 2.13 deprecates ``torch.jit.*`` and
``torch.ao.quantization``; they still work and remain the only way to ship a dynamically
quantised LSTM as one self-contained file, so we use them and leave their warnings visible.

Metadata: one TorchScript "extra file" per :meth:`ModelMetadata.to_props` key, named after the
key (``ser_edge.feature_config``, ``ser_edge.labels``, ...). They sit in the zip archive under
``<archive>/extra/<key>``, so :func:`read_metadata_props` reads them without torch.
"""

from __future__ import annotations

import copy
import os
import zipfile
from typing import Dict, Tuple

import numpy as np
import torch
from torch import nn

from ser_edge.runtime.metadata import PREFIX, ModelMetadata

from .common import example_inputs, torch_logits
from .errors import ExportError

#: Tolerance between a scripted module and the eager module it came from (same kernels, so
#: anything above float noise means scripting changed the computation).
SCRIPT_ATOL = 1e-5


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 copy of ``model`` (the original is left untouched)."""
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.LSTM, nn.Linear},
                                                  dtype=torch.qint8)


def export_torchscript(model: nn.Module, metadata: ModelMetadata, path: str) -> None:
    """Script ``model`` (fp32 or already quantised) to ``path`` with ``metadata`` as extra files,
    then load it back and check outputs and metadata. Raises :class:`ExportError`."""
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, path, _extra_files=metadata.to_props())
    loaded = load_torchscript(path)
    for features, lengths in _check_inputs(metadata.feature_config.n_features):
        want = torch_logits(model, features, lengths)
        got = torch_logits(loaded, features, lengths)
        if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=SCRIPT_ATOL):
            raise ExportError(f"{path}: scripted model disagrees with the eager one on input shape "
                              f"{features.shape} (max |diff| {np.max(np.abs(got - want)):.3g})")


def load_torchscript(path: str) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(os.fspath(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as e:
        raise ExportError(f"{path}: not a loadable TorchScript file: {str(e).splitlines()[0]}") from None


def read_metadata_props(path: str) -> Dict[str, str]:
    """The ``ser_edge.*`` extra files of a TorchScript archive, as props (no torch needed)."""
    try:
        with zipfile.ZipFile(path) as zf:
            props = {}
            for name in zf.namelist():
                parts = name.split("/")
                if len(parts) == 3 and parts[1] == "extra" and parts[2].startswith(PREFIX):
                    props[parts[2]] = zf.read(name).decode("utf-8")
            return props
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: not a TorchScript archive ({e})") from None


def _check_inputs(n_features: int) -> Tuple[Tuple[np.ndarray, np.ndarray], ...]:
    """The tracing-style example plus a different batch/time with padding and a 1-frame item."""
    f, n = example_inputs(n_features)
    rng = np.random.default_rng(1)
    other = rng.standard_normal((3, 7, n_features)).astype(np.float32)
    return (f.numpy(), n.numpy()), (other, np.array([7, 3, 1], dtype=np.int64))
