"""GPTQModel.load / quantize / save / generate / perplexity / eval over gptq.cpp's library.

Each call is the library function the CLI calls for the same job (eval::generate,
eval::perplexity, eval::text_perplexity, eval::evaluate_multiple_choice,
quant::quantize_model); this layer only converts arguments and results.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _gptqcpp
from ._config import QuantizeConfig
from ._progress import Progress
from ._tokenizer import Tokenizer, _ids

PathLike = Union[str, os.PathLike]

# The shard limit quantize writes with: `gptq quantize --max-shard-size`'s default.
_MAX_SHARD_BYTES = 4_000_000_000


def _device_spec(device: Any) -> str:
    if device is None:
        return "auto"
    spec = str(device)  # also torch.device("cuda:0")
    if spec in ("auto", "cpu", "cuda") or (spec.startswith("cuda:") and spec[5:].isdigit()):
        return spec
    raise ValueError(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "")
    return {"float16": "float16", "half": "float16", "bfloat16": "bfloat16", "float32": "float32",
            "float": "float32"}.get(name, name)


class GPTQCppModel:
    """A model that GPTQModel.load returned: a base model to quantize (given a
    QuantizeConfig) or a dense or GPTQ model to run. Weights load on first use."""

    def __init__(self, path: PathLike, quantize_config: Optional[QuantizeConfig], device: str, dtype: str):
        self.model_local_path = str(path)
        self.quantize_config = quantize_config
        self._device = device
        self._dtype = dtype
        self._tokenizer: Optional[Tokenizer] = None
        self._runtime: Optional[Any] = None
        self._quantized_dir: Optional[Path] = None  # quantize()'s output, until save()
        self._workdir_cleanup: Optional[weakref.finalize] = None
        self.quantized = quantize_config is None and _has_quantization_config(self.model_local_path)
        if quantize_config is not None:
            _gptqcpp.check_quantize_config(quantize_config._to_json(), self.model_local_path)

    # --- running -----------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.model_local_path)
        return self._tokenizer

    @property
    def runtime(self):
        if self._runtime is None:
            self._runtime = _gptqcpp.Model(self._run_path(), self._device, self._dtype)
        return self._runtime

    @property
    def device(self) -> str:
        return self.runtime.info()["device"]

    def generate(self, inputs: Any = None, max_new_tokens: Optional[int] = None, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0, seed: int = 0,
                 input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> List[List[int]]:
        """Token ids, one list per prompt: the prompt followed by the new tokens (the EOS that
        stopped generation is not included), as transformers returns them without it.

        inputs: a string, a list of strings, token ids, a list of token-id lists, or the dict
        model.tokenizer(...) returns. do_sample=False is greedy; sampling takes temperature,
        top_k (0: off) and top_p from a generator seeded with `seed`. max_new_tokens None: 256,
        as `gptq generate`. Padding does not exist here (each prompt runs on its own), so
        attention_mask is not needed and, when given, must be all ones.
        """
        if kwargs:
            raise TypeError(f"generate() got unexpected arguments: {', '.join(sorted(kwargs))}")
        if inputs is None:
            inputs = input_ids
        if isinstance(inputs, dict):
            attention_mask = inputs.get("attention_mask", attention_mask)
            inputs = inputs["input_ids"]
        if attention_mask is not None and 0 in _flatten(attention_mask):
            raise NotImplementedError("generate: attention_mask with zeros (padding) is not supported; pass "
                                      "each prompt unpadded")
        prompts = self._prompts(inputs)
        temp = float(temperature) if do_sample else 0.0
        out = []
        for ids in prompts:
            r = self.runtime.generate(ids, 256 if max_new_tokens is None else int(max_new_tokens), temp,
                                      int(top_k or 0), float(top_p), int(seed), None)
            out.append(ids + r["tokens"])
        return out

    def _prompts(self, inputs: Any) -> List[List[int]]:
        if isinstance(inputs, str):
            return [self.tokenizer.encode(inputs)]
        if hasattr(inputs, "tolist"):
            inputs = inputs.tolist()
        inputs = list(inputs)
        if not inputs:
            raise ValueError("generate: no prompt given")
        if isinstance(inputs[0], str):
            return [self.tokenizer.encode(t) for t in inputs]
        if isinstance(inputs[0], int):
            return [_ids(inputs)]
        return [_ids(x) for x in inputs]

    def perplexity(self, texts: Union[str, Sequence[str]], max_length: int = 512, batch_size: int = 8,
                   ctx: Optional[int] = None, max_windows: Optional[int] = None,
                   details: bool = False) -> Union[float, Dict[str, Any]]:
        """texts a list: each text scored on its own (BOS + text, cut to max_length tokens),
        the mean of per-text perplexities -- `gptq ppl --texts`. texts a string: the whole
        text as one token stream in non-overlapping windows of `ctx` tokens (default
        min(2048, context)), the GPTQ paper's protocol -- `gptq ppl --text`. batch_size does
        not change the numbers (texts are scored one at a time, padding never enters).
        details=True returns the library's whole result."""
        if isinstance(texts, str):
            tokens = self.tokenizer.encode(texts)
            bar: Dict[str, Progress] = {}

            def on_window(done: int, total: int, ppl: float) -> None:
                bar.setdefault("bar", Progress("ppl", total)).update(done, f"ppl {ppl:.4f}")

            r = self.runtime.perplexity(tokens, int(ctx or 0), int(max_windows or 0), on_window)
            if "bar" in bar:
                bar["bar"].finish()
            return r if details else r["ppl"]
        texts = list(texts)
        progress = Progress("ppl", len(texts))
        r = self.runtime.text_perplexity(self.tokenizer._tk, texts, int(max_length),
                                         lambda done, total: progress.update(done))
        progress.finish()
        return r if details else r["mean_ppl"]

    def memory(self) -> Dict[str, Any]:
        """Weight bytes of the loaded model, peak host RSS, and on a GPU the bytes gptq.cpp
        allocated at most and the device's used / total."""
        return self.runtime.info()

    def eval(self, tasks: Sequence[PathLike], limit: Optional[int] = None) -> Dict[str, Any]:
        return _evaluate(self, tasks, limit)

    # --- quantizing ----------------------------------------------------------------------
    def quantize(self, calibration: Sequence[Any], calibration_concat_size: Optional[int] = None,
                 calibration_sort: Optional[str] = "desc", batch_size: int = 1, tokenizer: Any = None,
                 calibration_data_min_length: int = 10, **kwargs: Any) -> List[Dict[str, Any]]:
        """GPTQ (or RTN) on the CPU, as `gptq quantize`; the checkpoint waits for save().

        calibration: strings (each encoded with the model's tokenizer, BOS first), token-id
        lists, or {"input_ids": ...} dicts; samples shorter than calibration_data_min_length
        tokens are dropped, then sorted by length ("desc", GPTQModel's default; "asc"; None
        keeps the order). batch_size samples of the longest length make one calibration
        forward (the library packs whole samples into chunks of batch_size x longest tokens).
        Returns the per-module log (name, bits, group_size, loss, damp, seconds...).
        """
        if self.quantize_config is None:
            raise ValueError("quantize: load the model with a QuantizeConfig: GPTQModel.load(path, QuantizeConfig(...))")
        for name in kwargs:
            if kwargs[name] is not None:
                raise NotImplementedError(f"quantize({name}=...): gptq.cpp does not implement '{name}'")
        if calibration_concat_size:
            raise NotImplementedError("quantize(calibration_concat_size=...): gptq.cpp does not concatenate "
                                      "calibration samples; pass the samples as they should be used")
        if tokenizer is not None:
            raise NotImplementedError("quantize(tokenizer=...): gptq.cpp uses the model's own tokenizer")
        if batch_size < 1:
            raise ValueError(f"quantize: batch_size={batch_size}: expected >= 1")
        qc = self.quantize_config
        samples: List[List[int]] = []
        if qc.method == "gptq":
            samples = self._calibration_samples(calibration, calibration_data_min_length, calibration_sort)
        longest = max((len(s) for s in samples), default=1)
        return self._run_quantize(samples, batch_size * longest)

    def _calibration_samples(self, calibration: Sequence[Any], min_length: int, sort: Optional[str]) -> List[List[int]]:
        if isinstance(calibration, (str, bytes)) or calibration is None:
            raise ValueError("quantize: calibration must be a list of texts, token-id lists or {'input_ids': ...} dicts")
        samples = []
        for item in calibration:
            if isinstance(item, str):
                ids = self.tokenizer.encode(item)
            else:
                ids = item["input_ids"] if isinstance(item, dict) else item
                if hasattr(ids, "tolist"):
                    ids = ids.tolist()
                ids = list(ids)
                if len(ids) == 1 and isinstance(ids[0], (list, tuple)):  # a batch of one
                    ids = list(ids[0])
                ids = [int(i) for i in ids]
            if len(ids) >= min_length:
                samples.append(ids)
        if not samples:
            raise ValueError(f"quantize: no calibration sample has {min_length} tokens or more "
                             f"(calibration_data_min_length)")
        if sort == "desc":
            samples.sort(key=len, reverse=True)
        elif sort == "asc":
            samples.sort(key=len)
        elif sort is not None:
            raise NotImplementedError(f"quantize(calibration_sort={sort!r}): gptq.cpp sorts 'desc', 'asc' or None")
        return samples

    def _run_quantize(self, samples: List[List[int]], batch_tokens: int) -> List[Dict[str, Any]]:
        workdir = Path(tempfile.mkdtemp(prefix="gptqcpp-quantize-"))
        out = workdir / "model"
        layers: Dict[str, Progress] = {}
        sys_err = _stderr()
        sys_err.write(f"gptqcpp quantize {self.model_local_path}\n  {self.quantize_config!r}\n")
        if samples:
            sys_err.write(f"  calibration: {len(samples)} samples, {sum(map(len, samples))} tokens\n")
        sys_err.write(f"  {'module':<40} {'bits':>4} {'group':>6} {'loss':>12} {'damp':>7} {'sec':>7}\n")

        def on_module(m: Dict[str, Any]) -> None:
            if not m["quantized"]:
                sys_err.write(f"  {m['name']:<40} skipped (dynamic rule)\n")
            else:
                sys_err.write(f"  {m['name']:<40} {m['bits']:>4} {m['group_size']:>6} {m['loss']:>12.5g} "
                              f"{m['damp']:>7.3f} {m['seconds']:>7.2f}" + ("  (damping raised)" if m["retries"] else "")
                              + "\n")

        def on_layer(done: int, total: int, seconds: float) -> None:
            layers.setdefault("bar", Progress("layers", total)).update(done)

        try:
            r = _gptqcpp.quantize(self.model_local_path, str(out), samples, self.quantize_config._to_json(),
                                  int(batch_tokens), _MAX_SHARD_BYTES, False, on_module, on_layer)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        if "bar" in layers:
            layers["bar"].finish(f"{r['shards']} shard(s), {r['tensor_bytes'] / 1e6:.2f} MB, "
                                 f"{r['bpw_quantized']:.3f} bits per quantized weight")
        self._discard_quantized()
        self._quantized_dir = out
        self._workdir_cleanup = weakref.finalize(self, shutil.rmtree, str(workdir), True)
        self._runtime = None  # generate / perplexity now run the quantized model
        self.quantize_result = r
        return r["modules"]

    def _discard_quantized(self) -> None:
        if self._workdir_cleanup is not None:
            self._workdir_cleanup()
        self._quantized_dir, self._workdir_cleanup = None, None

    def _run_path(self) -> str:
        return str(self._quantized_dir) if self._quantized_dir is not None else self.model_local_path

    def save(self, save_dir: PathLike, max_shard_size: Optional[Union[int, str]] = None, **kwargs: Any) -> None:
        """Writes the checkpoint quantize() made (or, for a model loaded without a
        QuantizeConfig, a copy of its files) to save_dir, replacing what was there: the new
        directory is complete before it takes save_dir's name."""
        if kwargs:
            raise NotImplementedError(f"save: gptq.cpp does not implement {', '.join(sorted(kwargs))}")
        if max_shard_size is not None:
            raise NotImplementedError("save(max_shard_size=...): quantize writes shards of at most 4GB "
                                      "(gptq quantize --max-shard-size sets it on the command line)")
        if self.quantize_config is not None and self._quantized_dir is None:
            raise ValueError("save: nothing to save yet: call quantize() first")
        src = Path(self._run_path())
        dst = Path(save_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        staged = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
        shutil.rmtree(staged, ignore_errors=True)
        if self._quantized_dir is not None:
            try:
                os.rename(src, staged)  # same filesystem: no copy
            except OSError:
                shutil.copytree(src, staged)
        else:
            shutil.copytree(src, staged)
        aside = dst.parent / f".{dst.name}.old-{os.getpid()}"
        if dst.exists():
            os.rename(dst, aside)
        os.rename(staged, dst)
        shutil.rmtree(aside, ignore_errors=True)
        if self._quantized_dir is not None:
            self._discard_quantized()
            self.model_local_path, self.quantize_config, self.quantized = str(dst), None, True
            self._runtime = self._tokenizer = None


def _flatten(x: Any) -> List[Any]:
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _flatten(item)]
    return [x]


def _stderr():
    import sys
    return sys.stderr


def _has_quantization_config(path: str) -> bool:
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        return "quantization_config" in json.loads((p / "config.json").read_text()) or \
            (p / "quantize_config.json").exists()
    except (OSError, ValueError):
        return False


def _evaluate(model: GPTQCppModel, tasks: Sequence[PathLike], limit: Optional[int]) -> Dict[str, Any]:
    if isinstance(tasks, (str, os.PathLike)):
        tasks = [tasks]
    if not tasks:
        raise ValueError("eval: give tasks=[path.jsonl, ...] (multiple-choice files, as `gptq eval --tasks`)")
    results: Dict[str, Any] = {}
    raw = []
    for task in tasks:
        bar: Dict[str, Progress] = {}

        def on_item(done: int, total: int, requests: int, name: str = Path(task).name) -> None:
            bar.setdefault("bar", Progress(f"eval {name}", total)).update(done, f"{requests} requests")

        r = json.loads(model.runtime.evaluate(model.tokenizer._tk, str(task), int(limit or 0), on_item))
        if "bar" in bar:
            bar["bar"].finish()
        raw.append(r)
        # lm-eval's results layout ("metric,filter"), which GPTQModel.eval returned.
        results[r["task"]] = {"alias": r["task"], "acc,none": r["acc"]["value"], "acc_stderr,none": r["acc"]["stderr"],
                              "acc_norm,none": r["acc_norm"]["value"],
                              "acc_norm_stderr,none": r["acc_norm"]["stderr"]}
    return {"results": results, "gptqcpp": raw}


class GPTQModel:
    """GPTQModel's entry points: load, eval."""

    @classmethod
    def load(cls, model_id_or_path: PathLike, quantize_config: Optional[Union[QuantizeConfig, Dict[str, Any]]] = None,
             device_map: Any = None, device: Any = None, backend: Any = "auto", dtype: Any = "auto",
             trust_remote_code: bool = False, **kwargs: Any) -> GPTQCppModel:
        """A local Hugging Face checkpoint directory or .gguf file (nothing is downloaded).
        device: 'cpu', 'cuda', 'cuda:N', or None/'auto' (the first GPU when present), made by
        the library's backend registry. dtype: 'auto' (the checkpoint's on a GPU, float32 on
        the CPU), 'float16', 'bfloat16', 'float32'. trust_remote_code has no effect: no
        model code is ever run."""
        if kwargs:
            raise NotImplementedError(f"GPTQModel.load: gptq.cpp does not implement {', '.join(sorted(kwargs))}")
        if str(getattr(backend, "value", backend)).lower() != "auto":
            raise NotImplementedError(f"GPTQModel.load(backend={backend!r}): gptq.cpp picks its own kernels; use device=")
        if isinstance(device_map, dict):
            raise NotImplementedError("GPTQModel.load(device_map={...}): one device per model; use device=")
        if device is None and device_map is not None:
            device = device_map
        if isinstance(quantize_config, dict):
            quantize_config = QuantizeConfig(**quantize_config)
        path = os.fspath(model_id_or_path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"model directory '{path}' does not exist (gptqcpp loads local checkpoints only)")
        return GPTQCppModel(path, quantize_config, _device_spec(device), _dtype_name(dtype))

    @classmethod
    def eval(cls, model_or_id_or_path: Union[GPTQCppModel, PathLike], tokenizer: Any = None,
             tasks: Optional[Sequence[PathLike]] = None, framework: Any = None, batch_size: int = 1,
             limit: Optional[int] = None, device: Any = None, output_path: Optional[PathLike] = None,
             **kwargs: Any) -> Dict[str, Any]:
        """Multiple-choice tasks by log-likelihood with lm-eval's definitions (`gptq eval`):
        tasks are JSONL files ({query, choices, gold} or ARC's layout). Returns lm-eval's
        {"results": {task: {"acc,none", "acc_stderr,none", "acc_norm,none", ...}}} plus the
        library's full result under "gptqcpp". batch_size does not change the numbers."""
        if kwargs:
            raise NotImplementedError(f"GPTQModel.eval: gptq.cpp does not implement {', '.join(sorted(kwargs))}")
        if framework is not None:
            raise NotImplementedError("GPTQModel.eval(framework=...): gptq.cpp evaluates natively; pass task files")
        if tokenizer is not None:
            raise NotImplementedError("GPTQModel.eval(tokenizer=...): the model's own tokenizer is used")
        model = model_or_id_or_path if isinstance(model_or_id_or_path, GPTQCppModel) else cls.load(
            model_or_id_or_path, device=device)
        result = _evaluate(model, tasks or [], limit)
        if output_path is not None:
            out = Path(output_path)
            tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps(result, indent=1))
            os.replace(tmp, out)
        return result
