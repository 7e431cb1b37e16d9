# The GPTQModel seed notebook's cells on gptq.cpp's bundled model, with only the import
# changed (`from gptqmodel import ...` -> `from gptqcpp import ...`) and model names
# replaced by local paths. Run it whole (python examples/notebook.py) or cell by cell
# (the `# %%` markers: VS Code, Jupytext). python/tests/test_notebook.py runs it.
#
# The seed notebook itself is not in this repository; its cells are rebuilt from issue
# 12's list: load and generate, QuantizeConfig(bits=4, group_size=32) on bundled text,
# quantize, save, load back, perplexity normal vs quantized, memory, multiple choice.

# %%
import os
from pathlib import Path

from gptqcpp import GPTQModel, QuantizeConfig

ROOT = Path(__file__).resolve().parents[1]
model_id = str(ROOT / "models" / "stories15M")
quant_path = os.environ.get("GPTQCPP_NOTEBOOK_OUT", str(ROOT / "build" / "stories15M-gptq-4bit-g32"))

# %% Load a model and generate
model = GPTQModel.load(model_id)
result = model.generate("Once upon a time")[0]
print(model.tokenizer.decode(result))

# %% Calibration data: the seed takes 1024 C4 texts; here, 64 passages of the bundled Bible
verses = (ROOT / "data" / "web-bible.txt").read_text().splitlines()
calibration_dataset = [" ".join(verses[i:i + 4]) for i in range(0, 64 * 4, 4)]

# %% Quantize
quant_config = QuantizeConfig(bits=4, group_size=32)
model = GPTQModel.load(model_id, quant_config)
model.quantize(calibration_dataset, batch_size=500)
model.save(quant_path)

# %% Load the quantized model back and generate
model = GPTQModel.load(quant_path)
result = model.generate("Uncovering deep insights begins with")[0]
print(model.tokenizer.decode(result))

# %% Perplexity: normal vs quantized, on in-domain text the model did not calibrate on
stories = [s for s in (ROOT / "data" / "stories15M-samples.txt").read_text().split("\n\n") if s.strip()][-40:]
base = GPTQModel.load(model_id)
ppl_base = base.perplexity(stories, max_length=512, batch_size=8)
ppl_quant = model.perplexity(stories, max_length=512, batch_size=8)
print(f"perplexity: base {ppl_base:.4f}, 4-bit g32 {ppl_quant:.4f}")

# %% Memory
for name, m in (("base", base), ("quantized", model)):
    mem = m.memory()
    print(f"{name}: weights {mem['weight_bytes'] / 2**20:.1f} MiB on {mem['device']}, "
          f"peak host RSS {mem['peak_host_bytes'] / 2**20:.1f} MiB")

# %% Multiple-choice evaluation (lm-eval's acc / acc_norm), natively
results = GPTQModel.eval(quant_path, tasks=[str(ROOT / "data" / "mc" / "bsdgames-quiz.jsonl")],
                         limit=int(os.environ.get("GPTQCPP_NOTEBOOK_EVAL_LIMIT", "0")) or None)
for task, r in results["results"].items():
    print(f"{task}: acc {r['acc,none']:.4f} ± {r['acc_stderr,none']:.4f}, "
          f"acc_norm {r['acc_norm,none']:.4f} ± {r['acc_norm_stderr,none']:.4f}")
