"""QuantizeConfig: GPTQModel's quantization settings, with its field names and defaults.

Every field the library implements is here; the GPTQModel fields it does not implement are
accepted only at their GPTQModel default and otherwise raise NotImplementedError naming the
field, so nothing is silently ignored. An unknown field is a TypeError, as for any dataclass.
The settings themselves (bits, group size, damping ranges, dynamic rules) are checked by the
library, which raises ValueError naming the field.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from . import _gptqcpp

# GPTQModel fields gptq.cpp does not implement, each with the GPTQModel default that means
# "not used" (and is therefore accepted).
_UNSUPPORTED: Dict[str, Any] = {
    "rotation": None,
    "adapter": None,
    "v2": False,
    "gptaq": None,
    "foem": None,
    "mock_quantization": False,
    "activation": None,
    "smooth": None,
    "smoother": None,
    "moe": None,
    "device": None,
    "pack_impl": "cpu",
}

# GPTQModel allows 2..8 bits; gptq.cpp packs these (GPTQ's standard widths).
_LIBRARY_BITS = (2, 3, 4, 8)
# GPTQModel's `mse` is the norm of its clipping search; the library's search uses the
# GPTQ reference's norm 2.4 (grid 100, max shrink 0.8).
_LIBRARY_MSE_NORM = 2.4


class QuantizeConfig:
    """GPTQModel's QuantizeConfig for the GPTQ method (and RTN, method="rtn").

    format=None (the default) writes "gptq" (v1, what every reader takes) while every
    module is symmetric and "gptq_v2" as soon as one is asymmetric, as `gptq quantize
    --format auto`; GPTQModel's own default is "gptq" and it converts asymmetric models
    itself, which a gptq.cpp v1 checkpoint could not rely on.
    """

    __slots__ = ("bits", "group_size", "desc_act", "sym", "damp_percent", "damp_auto_increment", "static_groups",
                 "true_sequential", "lm_head", "mse", "act_group_aware", "dynamic", "method", "format")

    def __init__(self, bits: int = 4, group_size: int = 128, desc_act: Optional[bool] = None, sym: bool = True,
                 damp_percent: Optional[float] = None, damp_auto_increment: Optional[float] = None,
                 static_groups: bool = False, true_sequential: bool = True, lm_head: bool = False, mse: float = 0.0,
                 act_group_aware: Optional[bool] = None, dynamic: Optional[Dict[str, Dict[str, Any]]] = None,
                 method: str = "gptq", format: Optional[str] = None, **others: Any):
        for name, value in others.items():
            if name not in _UNSUPPORTED:
                raise TypeError(f"QuantizeConfig got an unexpected field '{name}'")
            if value != _UNSUPPORTED[name]:
                raise NotImplementedError(f"QuantizeConfig.{name}={value!r}: gptq.cpp does not implement '{name}'")
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise ValueError(f"QuantizeConfig.bits={bits!r}: expected an integer")
        if bits in (5, 6, 7):
            raise NotImplementedError(f"QuantizeConfig.bits={bits}: gptq.cpp packs 2, 3, 4 or 8 bits")
        method = str(getattr(method, "value", method)).lower()
        if method not in ("gptq", "rtn"):
            raise NotImplementedError(f"QuantizeConfig.method={method!r}: gptq.cpp implements 'gptq' and 'rtn'")
        if format is not None:
            format = str(getattr(format, "value", format)).lower()
            if format not in ("gptq", "gptq_v2"):
                raise NotImplementedError(f"QuantizeConfig.format={format!r}: gptq.cpp writes 'gptq' and 'gptq_v2'")
        if mse not in (0, 0.0, _LIBRARY_MSE_NORM):
            raise NotImplementedError(
                f"QuantizeConfig.mse={mse!r}: gptq.cpp's clipping search uses norm {_LIBRARY_MSE_NORM} only "
                f"(mse={_LIBRARY_MSE_NORM}), or none (mse=0)")
        self.bits = bits
        self.group_size = group_size
        self.sym = sym
        self.static_groups = static_groups
        self.true_sequential = true_sequential
        self.lm_head = lm_head
        self.mse = float(mse)
        self.dynamic = dynamic
        self.method = method
        self.format = format
        # GPTQModel's resolution of the None defaults.
        self.damp_percent = 0.05 if damp_percent is None else damp_percent
        self.damp_auto_increment = 0.01 if damp_auto_increment is None else damp_auto_increment
        self.desc_act = bool(desc_act)
        if act_group_aware and self.desc_act:
            raise ValueError("QuantizeConfig: act_group_aware=True requires desc_act=False")
        # GAR is GPTQ's (on unless desc_act), and means nothing with one group per row.
        if act_group_aware is None:
            act_group_aware = method == "gptq" and not self.desc_act
        self.act_group_aware = bool(act_group_aware) and group_size != -1 and method == "gptq"
        _gptqcpp.check_quantize_config(self._to_json())

    def to_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def _to_json(self) -> str:
        d = self.to_dict()
        d["mse"] = self.mse > 0
        return json.dumps(d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuantizeConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "QuantizeConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"
