"""The model's tokenizer with transformers' call shapes: encode, decode, batch_decode, __call__."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence, Union

from . import _gptqcpp


def _ids(token_ids: Any) -> List[int]:
    if isinstance(token_ids, int):
        return [token_ids]
    if hasattr(token_ids, "tolist"):  # numpy arrays, tensors
        token_ids = token_ids.tolist()
    ids = list(token_ids)
    if ids and isinstance(ids[0], (list, tuple)):
        raise ValueError("decode takes one sequence of token ids; use batch_decode for several")
    return [int(i) for i in ids]


class Tokenizer:
    def __init__(self, model_path: str):
        self._tk = _gptqcpp.Tokenizer.load_for_model(str(model_path))

    @property
    def vocab_size(self) -> int:
        return self._tk.vocab_size

    def __len__(self) -> int:
        return self._tk.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        return self._tk.encode(text, add_special_tokens)

    # transformers keeps special tokens in decode unless told otherwise.
    def decode(self, token_ids: Any, skip_special_tokens: bool = False) -> str:
        return self._tk.decode(_ids(token_ids), skip_special_tokens)

    def batch_decode(self, sequences: Iterable[Any], skip_special_tokens: bool = False) -> List[str]:
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]) -> Union[str, List[str]]:
        if isinstance(ids, int):
            return self._tk.id_to_piece(ids)
        return [self._tk.id_to_piece(int(i)) for i in ids]

    def __call__(self, text: Union[str, Sequence[str]], add_special_tokens: bool = True) -> Dict[str, Any]:
        """{"input_ids": [...], "attention_mask": [...]}, a list of each for a list of texts."""
        if isinstance(text, str):
            ids = self.encode(text, add_special_tokens)
            return {"input_ids": ids, "attention_mask": [1] * len(ids)}
        ids = [self.encode(t, add_special_tokens) for t in text]
        return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}
