import json

from gptqcpp import GPTQModel
from conftest import MODEL, reference


def test_encode_matches_hugging_face_tokenizers_on_every_reference_case():
    tk = GPTQModel.load(MODEL).tokenizer
    cases = [json.loads(line) for line in reference("tokenizer_cases.jsonl").read_text().splitlines() if line]
    assert len(cases) > 200
    mismatches = [c["text"] for c in cases if tk.encode(c["text"]) != c["ids"]]
    assert mismatches == []


def test_call_encode_decode_have_transformers_shapes():
    tk = GPTQModel.load(MODEL).tokenizer
    ids = tk.encode("Once upon a time")
    assert ids == [1, 9038, 2501, 263, 931]  # BOS + the SentencePiece pieces (reference: greedy.json)
    assert tk.encode("Once upon a time", add_special_tokens=False) == ids[1:]
    assert tk("Once upon a time") == {"input_ids": ids, "attention_mask": [1] * 5}
    batch = tk(["a", "Once upon a time"])
    assert batch["input_ids"][1] == ids and batch["attention_mask"][0] == [1] * len(batch["input_ids"][0])
    # transformers keeps special tokens in decode unless asked to skip them.
    assert tk.decode(ids) == "<s> Once upon a time"
    assert tk.decode(ids, skip_special_tokens=True) == "Once upon a time"
    assert tk.batch_decode([ids, ids[1:]], skip_special_tokens=True) == ["Once upon a time"] * 2
    assert tk.convert_ids_to_tokens(9038) == "▁Once"
    assert tk.vocab_size == 32000
