"""A short tour of what keras-bert-kit can do so far; what `make run` runs.

    python -m training.demo [--out DIR]

Builds BERT and DistilBERT encoders and their pretraining heads from presets,
runs them on a padded batch, shows that padding does not change the real
tokens' outputs, runs under mixed bfloat16, and saves and reloads a pretrainer.
"""

import argparse
import os
import tempfile
import time

import keras
import numpy as np

import keras_bert_kit as kbk


def _batch(config, batch_size=4, seq_len=32, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(seq_len // 2, seq_len + 1, size=batch_size)
    padding_mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype("int32")
    input_ids = rng.integers(1000, config.vocab_size, size=(batch_size, seq_len)) * padding_mask
    inputs = {"input_ids": input_ids.astype("int32"), "padding_mask": padding_mask}
    if isinstance(config, kbk.BertConfig):
        inputs["segment_ids"] = (np.arange(seq_len)[None, :] >= lengths[:, None] // 2).astype(
            "int32"
        ) * padding_mask
    inputs["masked_positions"] = np.stack([rng.choice(n, 4, replace=False) for n in lengths])
    return inputs


def _describe(label, model):
    print(f"  {label:<34} {model.count_params():>12,} parameters")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="where to save the demo model (default: a temp dir)")
    args = parser.parse_args(argv)

    print("Presets:")
    for name, config in kbk.PRESETS.items():
        print(
            f"  {name:<16} layers={config.num_layers:<3} hidden={config.hidden_size:<5} "
            f"heads={config.num_heads:<3} intermediate={config.intermediate_size}"
        )

    print("\nModels built from the bert_mini and a 4-layer DistilBERT config:")
    bert = kbk.BertPretrainer(kbk.BertEncoder("bert_mini"))
    distil_config = kbk.DistilBertConfig(num_layers=4, hidden_size=256, num_heads=4)
    distil = kbk.DistilBertPretrainer(kbk.DistilBertEncoder(distil_config))
    for label, model in [
        ("BertEncoder(bert_mini)", bert.encoder),
        ("BertPretrainer (MLM + NSP)", bert),
        ("DistilBertPretrainer (MLM)", distil),
    ]:
        _describe(label, model)

    inputs = _batch(bert.encoder.config)
    start = time.perf_counter()
    outputs = bert.predict(inputs, verbose=0)
    print(
        f"\nBertPretrainer on a padded batch {inputs['input_ids'].shape}: "
        f"mlm_logits {outputs['mlm_logits'].shape}, nsp_logits {outputs['nsp_logits'].shape} "
        f"({time.perf_counter() - start:.2f} s with tracing)"
    )

    # Padding is invisible to real tokens: the same text, padded further.
    encoder = bert.encoder
    short = {k: v[:1, :16] for k, v in inputs.items() if k != "masked_positions"}
    short["padding_mask"][:] = 1
    padded = {k: np.pad(v, ((0, 0), (0, 16))) for k, v in short.items()}
    a = encoder(short)["sequence_output"].numpy()
    b = encoder(padded)["sequence_output"].numpy()[:, :16]
    print(f"Extra padding changes real-token outputs by at most {np.abs(a - b).max():.1e}")

    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = kbk.BertEncoder("bert_mini")
        out = mixed({k: v for k, v in inputs.items() if k != "masked_positions"})
        print(
            f"mixed_bfloat16 encoder: compute {out['sequence_output'].dtype.name}, "
            f"variables {mixed.weights[0].dtype}, finite: "
            f"{bool(np.isfinite(out['sequence_output'].numpy().astype('float32')).all())}"
        )
    finally:
        keras.mixed_precision.set_dtype_policy(policy)

    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or tmp
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "bert_mini_pretrainer.keras")
        bert.save(path)
        restored = keras.models.load_model(path)
        diff = np.abs(restored.predict(inputs, verbose=0)["mlm_logits"] - outputs["mlm_logits"])
        print(f"Saved {path} and reloaded it: max |logit difference| = {diff.max():.1e}")


if __name__ == "__main__":
    main()
