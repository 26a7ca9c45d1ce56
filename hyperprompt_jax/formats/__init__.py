# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Checkpoint formats: one module per format, and the restore that picks one.

  tree.py     parameter trees, T5Config <-> model_config.json, CheckpointReader
  t5x.py      t5x's Orbax and legacy (msgpack + zarr) layouts: readers and writers
  hf.py       Hugging Face `transformers` T5 folders: readers and writers
  restore.py  which format a path is, open it, restore it into the network

The package imports nothing itself; import the module you need.
"""
