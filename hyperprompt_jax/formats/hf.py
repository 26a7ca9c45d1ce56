# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Hugging Face `transformers` T5 checkpoints <-> our parameters and T5Config.

A Hugging Face T5 folder is `config.json` plus `model.safetensors` (or a
sharded `model.safetensors.index.json`, or a PyTorch `pytorch_model.bin` /
`pytorch_model.bin.index.json`; PyTorch files need `torch`). T5 (T5.1.0:
ReLU, logits from the tied embedding scaled by `d_model**-0.5`), T5 v1.1, LM-
adapted T5 and Flan-T5 (gated GELU, separate `lm_head`) are all
`T5ForConditionalGeneration` with `model_type: t5`.

  load_hf_checkpoint(folder, **config_overrides) -> (T5Config, params)
  save_hf_checkpoint(folder, params, config, dtype='float32') -> dropped param names

Mapping (HF `nn.Linear` weights are `[out, in]`; our kernels are `[in, out]`,
so every projection is transposed; the 1/sqrt(d_kv) attention scale is folded
into the query weights in both):

  shared.weight [V,E]                                token_embedder/embedding [V,E]
  {enc,dec}oder.block.0.layer.0.SelfAttention.relative_attention_bias.weight [buckets,H]
                                                     {enc,dec}oder/relpos_bias/rel_embedding [H,buckets]
  encoder.block.i.layer.0.SelfAttention.{q,k,v}      encoder/layers_i/attention/{query,key,value}/kernel
  encoder.block.i.layer.0.SelfAttention.o            encoder/layers_i/attention/out/kernel
  encoder.block.i.layer.0.layer_norm                 encoder/layers_i/pre_attention_layer_norm/scale
  encoder.block.i.layer.1.DenseReluDense.{wi|wi_0,wi_1,wo}  encoder/layers_i/mlp/{wi|wi_0,wi_1,wo}/kernel
  encoder.block.i.layer.1.layer_norm                 encoder/layers_i/pre_mlp_layer_norm/scale
  decoder.block.i.layer.0.{SelfAttention,layer_norm} decoder/layers_i/{self_attention,pre_self_attention_layer_norm}
  decoder.block.i.layer.1.{EncDecAttention,layer_norm}
                                      decoder/layers_i/{encoder_decoder_attention,pre_cross_attention_layer_norm}
  decoder.block.i.layer.2.{DenseReluDense,layer_norm} decoder/layers_i/{mlp,pre_mlp_layer_norm}
  {enc,dec}oder.final_layer_norm.weight              {enc,dec}oder/{enc,dec}oder_norm/scale
  lm_head.weight [V,E] (untied only)                 decoder/logits_dense/kernel [E,V]

`feed_forward_proj`: 'relu' -> ('relu',); 'gated-gelu' (HF runs gelu_new, the
tanh approximation = flax `nn.gelu`) -> ('gelu', 'linear'); also 'gated-relu',
'gated-silu', 'silu' and 'gelu_new'. Plain 'gelu' (exact erf GELU) has no
T5Config equivalent and is refused.

Tied or untied logits: HF scales the decoder output by `d_model**-0.5` when the
config's `tie_word_embeddings` is true (transformers >= 5 saves this as
`scale_decoder_outputs`). Scaled and no separate `lm_head` -> our
`logits_via_embedding=True`; unscaled -> `logits_dense` from `lm_head` (or a
copy of `shared` if the checkpoint has none).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import ml_dtypes
import numpy as np

from hyperprompt_jax import network
from hyperprompt_jax.formats import tree as tree_lib

CheckpointError = tree_lib.CheckpointError

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX, TORCH_FILE, TORCH_INDEX)
ARCHITECTURES = ("T5ForConditionalGeneration", "T5WithLMHeadModel")
MODEL_TYPE = "t5"
# Keys HF itself ignores when loading a T5ForConditionalGeneration.
_IGNORED_KEYS = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
# Keys that must be copies of `shared.weight` (HF ties them to it).
_TIED_TO_SHARED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")

# feed_forward_proj activation name (HF ACT2FN) -> our activation name.
_HF_TO_OUR_ACTIVATION = {"relu": "relu", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
                         "silu": "silu", "swish": "silu"}
# Our mlp_activations -> feed_forward_proj.
_OURS_TO_FEED_FORWARD_PROJ = {("relu",): "relu", ("silu",): "silu", ("gelu",): "gelu_new",
                              ("gelu", "linear"): "gated-gelu",
                              ("relu", "linear"): "gated-relu",
                              ("silu", "linear"): "gated-silu"}

_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                       "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NUMPY_TO_SAFETENSORS = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items()}


def is_hf_dir(path: str) -> bool:
  return (os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE))
          and any(os.path.isfile(os.path.join(path, f)) for f in WEIGHT_FILES))


# ---------------------------------------------------------------------------
# Config.
# ---------------------------------------------------------------------------


def load_hf_config(folder: str) -> Dict[str, Any]:
  """`config.json` of a HF T5 folder, checked to be an encoder-decoder T5 LM."""
  if not os.path.isdir(folder):
    raise CheckpointError(f"Hugging Face checkpoint folder does not exist: {folder}")
  path = os.path.join(folder, CONFIG_FILE)
  if not os.path.isfile(path):
    raise CheckpointError(f"{folder} has no {CONFIG_FILE}; a Hugging Face checkpoint needs one")
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read {path}: {e}") from None
  if not isinstance(config, dict):
    raise CheckpointError(f"{path} is not a JSON object")
  model_type = config.get("model_type")
  architectures = config.get("architectures") or []
  if model_type != MODEL_TYPE or any(a not in ARCHITECTURES for a in architectures):
    raise CheckpointError(
        f"unsupported architecture in {path}: model_type={model_type!r}, "
        f"architectures={architectures}; only model_type 't5' with "
        f"{' or '.join(ARCHITECTURES)} (T5, T5 v1.1, LM-adapted T5, Flan-T5) is supported")
  if config.get("is_encoder_decoder") is False or config.get("is_decoder"):
    raise CheckpointError(f"{path} is not an encoder-decoder T5 (is_encoder_decoder="
                          f"{config.get('is_encoder_decoder')}, is_decoder={config.get('is_decoder')})")
  return config


def mlp_activations_from_hf(feed_forward_proj: str) -> Tuple[str, ...]:
  """T5Config.mlp_activations for HF's `feed_forward_proj` (as transformers reads it)."""
  parts = feed_forward_proj.split("-")
  if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
    raise CheckpointError(f"feed_forward_proj={feed_forward_proj!r} is not 'ACT' or 'gated-ACT'")
  gated = parts[0] == "gated" and len(parts) == 2
  act = "gelu_new" if feed_forward_proj == "gated-gelu" else parts[-1]
  if act not in _HF_TO_OUR_ACTIVATION:
    detail = (" (HF runs the exact erf GELU there; T5Config's 'gelu' is the tanh "
              "approximation)" if act == "gelu" else "")
    raise CheckpointError(f"feed_forward_proj={feed_forward_proj!r} is not supported{detail}; "
                          f"supported: {sorted(set(_OURS_TO_FEED_FORWARD_PROJ.values()))}")
  ours = _HF_TO_OUR_ACTIVATION[act]
  return (ours, "linear") if gated else (ours,)


def _scales_decoder_output(hf_config: Mapping[str, Any]) -> bool:
  if "scale_decoder_outputs" in hf_config:
    return bool(hf_config["scale_decoder_outputs"])
  return bool(hf_config.get("tie_word_embeddings", True))


def config_from_hf(hf_config: Mapping[str, Any], state_dict: Mapping[str, np.ndarray],
                   **overrides) -> network.T5Config:
  """Our T5Config for a HF T5 config and its weights (the weights decide tying)."""
  try:
    num_layers = int(hf_config["num_layers"])
    values = dict(
        vocab_size=int(hf_config["vocab_size"]), emb_dim=int(hf_config["d_model"]),
        num_heads=int(hf_config["num_heads"]), head_dim=int(hf_config["d_kv"]),
        num_encoder_layers=num_layers,
        num_decoder_layers=int(hf_config.get("num_decoder_layers") or num_layers),
        mlp_dim=int(hf_config["d_ff"]),
        dropout_rate=float(hf_config.get("dropout_rate", 0.1)),
        relative_attention_num_buckets=int(hf_config.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(
            hf_config.get("relative_attention_max_distance", 128)),
        layer_norm_epsilon=float(hf_config.get("layer_norm_epsilon", 1e-6)))
  except KeyError as e:
    raise CheckpointError(f"the HF T5 config lacks the field {e.args[0]!r}") from None
  values["mlp_activations"] = mlp_activations_from_hf(hf_config.get("feed_forward_proj", "relu"))
  separate_head = ("lm_head.weight" in state_dict and "shared.weight" in state_dict
                   and not np.array_equal(state_dict["lm_head.weight"], state_dict["shared.weight"]))
  scaled = _scales_decoder_output(hf_config)
  if scaled and separate_head:
    raise CheckpointError(
        "the HF config scales the decoder output by d_model**-0.5 (tie_word_embeddings=True) "
        "but lm_head.weight differs from shared.weight; T5Config cannot express a scaled "
        "untied head")
  values["logits_via_embedding"] = scaled
  values.update(overrides)
  return network.T5Config(**values)


def hf_config_from_config(config: network.T5Config) -> Dict[str, Any]:
  """A transformers `T5Config` dict for our config's backbone."""
  activations = tuple(config.mlp_activations)
  if activations not in _OURS_TO_FEED_FORWARD_PROJ:
    raise CheckpointError(f"mlp_activations={activations} has no Hugging Face T5 "
                          f"feed_forward_proj; supported: {sorted(_OURS_TO_FEED_FORWARD_PROJ)}")
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": MODEL_TYPE,
      "vocab_size": config.vocab_size, "d_model": config.emb_dim, "d_kv": config.head_dim,
      "d_ff": config.mlp_dim, "num_layers": config.num_encoder_layers,
      "num_decoder_layers": config.num_decoder_layers, "num_heads": config.num_heads,
      "relative_attention_num_buckets": config.relative_attention_num_buckets,
      "relative_attention_max_distance": config.relative_attention_max_distance,
      "dropout_rate": config.dropout_rate, "layer_norm_epsilon": config.layer_norm_epsilon,
      "initializer_factor": 1.0, "feed_forward_proj": _OURS_TO_FEED_FORWARD_PROJ[activations],
      "is_encoder_decoder": True, "use_cache": True, "pad_token_id": 0, "eos_token_id": 1,
      "decoder_start_token_id": 0, "tie_word_embeddings": bool(config.logits_via_embedding),
      "scale_decoder_outputs": bool(config.logits_via_embedding),
  }


# ---------------------------------------------------------------------------
# Name and layout mapping.
# ---------------------------------------------------------------------------


def name_map(config: network.T5Config) -> List[Tuple[str, str, bool]]:
  """`(hf_key, our_path, transposed)` for every backbone parameter of `config`."""
  gated = len(config.mlp_activations) > 1
  wi = [f"wi_{i}" for i in range(len(config.mlp_activations))] if gated else ["wi"]
  out = [("shared.weight", "token_embedder/embedding", False)]
  attn = list(zip("qkvo", ("query", "key", "value", "out")))

  def attention(hf_prefix, ours_prefix):
    return [(f"{hf_prefix}.{h}.weight", f"{ours_prefix}/{o}/kernel", True) for h, o in attn]

  def mlp(hf_prefix, ours_prefix):
    return [(f"{hf_prefix}.DenseReluDense.{w}.weight", f"{ours_prefix}/mlp/{w}/kernel", True)
            for w in wi + ["wo"]]

  for stack in ("encoder", "decoder"):
    out.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                f"{stack}/relpos_bias/rel_embedding", True))
  for i in range(config.num_encoder_layers):
    hf, ours = f"encoder.block.{i}.layer", f"encoder/layers_{i}"
    out += attention(f"{hf}.0.SelfAttention", f"{ours}/attention")
    out.append((f"{hf}.0.layer_norm.weight", f"{ours}/pre_attention_layer_norm/scale", False))
    out += mlp(f"{hf}.1", ours)
    out.append((f"{hf}.1.layer_norm.weight", f"{ours}/pre_mlp_layer_norm/scale", False))
  out.append(("encoder.final_layer_norm.weight", "encoder/encoder_norm/scale", False))
  for i in range(config.num_decoder_layers):
    hf, ours = f"decoder.block.{i}.layer", f"decoder/layers_{i}"
    out += attention(f"{hf}.0.SelfAttention", f"{ours}/self_attention")
    out.append((f"{hf}.0.layer_norm.weight", f"{ours}/pre_self_attention_layer_norm/scale",
                False))
    out += attention(f"{hf}.1.EncDecAttention", f"{ours}/encoder_decoder_attention")
    out.append((f"{hf}.1.layer_norm.weight", f"{ours}/pre_cross_attention_layer_norm/scale",
                False))
    out += mlp(f"{hf}.2", ours)
    out.append((f"{hf}.2.layer_norm.weight", f"{ours}/pre_mlp_layer_norm/scale", False))
  out.append(("decoder.final_layer_norm.weight", "decoder/decoder_norm/scale", False))
  if not config.logits_via_embedding:
    out.append(("lm_head.weight", "decoder/logits_dense/kernel", True))
  return out


def params_from_hf_state_dict(state_dict: Mapping[str, np.ndarray], config: network.T5Config,
                              dtype: Any = np.float32) -> Dict[str, Any]:
  """Our params tree (t5x names) from a HF T5 state dict (numpy arrays)."""
  state_dict = dict(state_dict)
  shared = state_dict.get("shared.weight")
  if shared is None:
    # Some exports keep only the encoder's (tied) copy.
    shared = state_dict.get("encoder.embed_tokens.weight")
    if shared is not None:
      state_dict["shared.weight"] = shared
  expected = tree_lib.flatten(tree_lib.abstract_params(tree_lib.backbone_config(config)))
  mapping = name_map(config)
  if not config.logits_via_embedding and "lm_head.weight" not in state_dict:
    if shared is None:
      raise CheckpointError("the checkpoint has neither lm_head.weight nor shared.weight")
    state_dict["lm_head.weight"] = shared  # Tied head without output scaling.
  used = {hf for hf, _, _ in mapping}
  missing = sorted(hf for hf in used if hf not in state_dict)
  if missing:
    raise CheckpointError(f"the HF checkpoint lacks {len(missing)} tensor(s) the config needs: "
                          f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
  for key in _TIED_TO_SHARED + (("lm_head.weight",) if config.logits_via_embedding else ()):
    if key in state_dict and not np.array_equal(state_dict[key], state_dict["shared.weight"]):
      raise CheckpointError(f"{key} differs from shared.weight; T5 ties them")
  unknown = sorted(k for k in state_dict
                   if k not in used and k not in _TIED_TO_SHARED + _IGNORED_KEYS
                   and k != "lm_head.weight")
  if unknown:
    raise CheckpointError(f"the HF checkpoint has tensor(s) a T5ForConditionalGeneration with "
                          f"this config does not: {', '.join(unknown[:10])}"
                          f"{' ...' if len(unknown) > 10 else ''}")
  flat = {}
  for hf, ours, transposed in mapping:
    value = np.asarray(state_dict[hf])
    value = value.T if transposed else value
    want = tuple(expected[ours].shape)
    if value.shape != want:
      raise CheckpointError(f"shape mismatch for {hf} -> {ours}: checkpoint {value.shape} "
                            f"(after transpose) vs config {want}")
    flat[ours] = np.ascontiguousarray(value.astype(dtype))
  return tree_lib.unflatten(flat)


def hf_state_dict_from_params(params: Mapping[str, Any], config: network.T5Config,
                              dtype: Any = np.float32
                              ) -> Tuple[Dict[str, np.ndarray], List[str]]:
  """`(state_dict, dropped)`: the HF tensors of our params, and the params HF has no place for."""
  flat = tree_lib.flatten(params)
  mapping = name_map(config)
  missing = [ours for _, ours, _ in mapping if ours not in flat]
  if missing:
    raise CheckpointError(f"params lack {len(missing)} backbone parameter(s) the config needs: "
                          f"{', '.join(missing[:10])}")
  state_dict = {}
  for hf, ours, transposed in mapping:
    value = np.asarray(flat[ours])
    state_dict[hf] = np.ascontiguousarray((value.T if transposed else value).astype(dtype))
  used = {ours for _, ours, _ in mapping}
  unknown = sorted(k for k in flat if k not in used and not tree_lib.is_conditioning_param(k))
  if unknown:
    raise CheckpointError(f"params have backbone parameter(s) the config does not define: "
                          f"{', '.join(unknown[:10])} (is logits_via_embedding / mlp_activations "
                          "right?)")
  return state_dict, sorted(k for k in flat if k not in used)


# ---------------------------------------------------------------------------
# Weight files.
# ---------------------------------------------------------------------------


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
  """Tensors of a safetensors file (BF16 as ml_dtypes.bfloat16), with truncation checks."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise CheckpointError(f"cannot read {path}: {e}") from None
  if size < 8:
    raise CheckpointError(f"{path} is truncated: {size} bytes, no safetensors header")
  header_len = int.from_bytes(raw[:8], "little")
  if header_len > size - 8:
    raise CheckpointError(f"{path} is truncated or not safetensors: header of {header_len} "
                          f"bytes in a {size}-byte file")
  try:
    header = json.loads(raw[8:8 + header_len])
  except ValueError as e:
    raise CheckpointError(f"{path} has a corrupt safetensors header: {e}") from None
  if not isinstance(header, dict):
    raise CheckpointError(f"{path} has a corrupt safetensors header")
  data = memoryview(raw)[8 + header_len:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
      shape = tuple(int(s) for s in info["shape"])
      begin, end = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
      raise CheckpointError(f"{path}: tensor {name!r} has an unsupported or corrupt header "
                            f"entry {info}") from None
    if end > len(data):
      raise CheckpointError(f"{path} is truncated: tensor {name!r} needs bytes {begin}..{end} "
                            f"of the data section but it holds {len(data)}")
    if end - begin != math.prod(shape) * dtype.itemsize or begin > end:
      raise CheckpointError(f"{path}: tensor {name!r} has {end - begin} bytes for shape "
                            f"{shape} of {info['dtype']}")
    out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
  return out


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray]) -> None:
  """Writes a safetensors file (`format: pt` metadata, as transformers expects)."""
  header: Dict[str, Any] = {"__metadata__": {"format": "pt"}}
  offset, blobs = 0, []
  for name in sorted(tensors):
    arr = np.ascontiguousarray(tensors[name])
    if arr.dtype not in _NUMPY_TO_SAFETENSORS:
      raise CheckpointError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
    blob = arr.tobytes()
    header[name] = {"dtype": _NUMPY_TO_SAFETENSORS[arr.dtype], "shape": list(arr.shape),
                    "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
  encoded = json.dumps(header, separators=(",", ":")).encode()
  encoded += b" " * (-len(encoded) % 8)
  with open(path, "wb") as f:
    f.write(len(encoded).to_bytes(8, "little"))
    f.write(encoded)
    for blob in blobs:
      f.write(blob)


def _read_torch(path: str) -> Dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError(f"reading {path} needs torch (pip install torch), or save the model "
                          "with safetensors") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"cannot read the PyTorch checkpoint {path} (truncated or corrupt?): "
                          f"{type(e).__name__}: {e}") from None
  if not isinstance(state, Mapping):
    raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
  out = {}
  for name, tensor in state.items():
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
      out[name] = tensor.float().numpy().astype(ml_dtypes.bfloat16)
    else:
      out[name] = tensor.numpy().copy()
  return out


def _read_sharded(folder: str, index_file: str, read_fn) -> Dict[str, np.ndarray]:
  path = os.path.join(folder, index_file)
  try:
    with open(path) as f:
      weight_map = json.load(f)["weight_map"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"cannot read the shard index {path}: {e}") from None
  out = {}
  for shard in sorted(set(weight_map.values())):
    shard_path = os.path.join(folder, shard)
    if not os.path.isfile(shard_path):
      raise CheckpointError(f"{path} lists the shard {shard}, which does not exist")
    out.update(read_fn(shard_path))
  absent = sorted(set(weight_map) - set(out))
  if absent:
    raise CheckpointError(f"{path} maps {', '.join(absent[:5])} to shards that lack them")
  return out


def load_hf_state_dict(folder: str) -> Dict[str, np.ndarray]:
  """All weight tensors of a HF folder (safetensors preferred over PyTorch files)."""
  candidates = {
      SAFETENSORS_FILE: lambda: read_safetensors(os.path.join(folder, SAFETENSORS_FILE)),
      SAFETENSORS_INDEX: lambda: _read_sharded(folder, SAFETENSORS_INDEX, read_safetensors),
      TORCH_FILE: lambda: _read_torch(os.path.join(folder, TORCH_FILE)),
      TORCH_INDEX: lambda: _read_sharded(folder, TORCH_INDEX, _read_torch),
  }
  for name in WEIGHT_FILES:
    if os.path.isfile(os.path.join(folder, name)):
      return candidates[name]()
  raise CheckpointError(f"{folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}")


# ---------------------------------------------------------------------------
# Folders.
# ---------------------------------------------------------------------------


def load_hf_checkpoint(folder: str, **config_overrides) -> Tuple[network.T5Config, Dict[str, Any]]:
  """`(T5Config, params)` of a HF T5 folder; params use t5x names (float32)."""
  hf_config = load_hf_config(folder)
  state_dict = load_hf_state_dict(folder)
  config = config_from_hf(hf_config, state_dict, **config_overrides)
  return config, params_from_hf_state_dict(state_dict, config)


def save_hf_checkpoint(folder: str, params: Mapping[str, Any], config: network.T5Config,
                       dtype: Any = "float32") -> List[str]:
  """Writes `config.json`, `generation_config.json` and `model.safetensors` into `folder`.

  Only the T5 backbone is exported; task-conditioning parameters (HyperPrompt)
  have no place in a HF T5 and are returned as the list of dropped names.
  """
  np_dtype = np.dtype(ml_dtypes.bfloat16) if str(dtype) == "bfloat16" else np.dtype(dtype)
  state_dict, dropped = hf_state_dict_from_params(params, config, np_dtype)
  hf_config = hf_config_from_config(config)
  hf_config["dtype"] = np_dtype.name
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, CONFIG_FILE), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
    f.write("\n")
  with open(os.path.join(folder, "generation_config.json"), "w") as f:
    json.dump({"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}, f, indent=2)
    f.write("\n")
  write_safetensors(os.path.join(folder, SAFETENSORS_FILE), state_dict)
  return dropped
