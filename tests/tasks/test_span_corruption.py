"""T5's span corruption, checked against its definition on fixed seeds."""
import numpy as np
import pytest
import seqio
import tensorflow as tf

from hyperprompt_tasks import span_corruption as sc
import wordnet_testlib

VOCAB_SIZE = 359  # byte vocabulary + 100 extra ids: <extra_id_k> = 358 - k


def _runs(mask):
  """[(is_noise, length)] of the runs of a boolean mask."""
  out = []
  for v in mask:
    if out and out[-1][0] == v:
      out[-1][1] += 1
    else:
      out.append([v, 1])
  return [tuple(r) for r in out]


@pytest.mark.parametrize("length", [2, 5, 20, 100, 141, 512])
@pytest.mark.parametrize("seed", [(0, 0), (1, 7), (123, 45)])
def test_noise_mask_matches_the_definition(length, seed):
  mask = sc.random_spans_noise_mask(length, tf.constant(seed, tf.int32)).numpy()
  num_noise = min(max(int(round(length * 0.15)), 1), length - 1)
  num_spans = max(int(round(num_noise / 3.0)), 1)
  assert mask.shape == (length,) and mask.sum() == num_noise
  runs = _runs(mask.tolist())
  assert runs[0][0] is False and runs[-1][0] is True  # non-noise first, noise last
  assert sum(1 for v, _ in runs if v) == num_spans == sum(1 for v, _ in runs if not v)
  again = sc.random_spans_noise_mask(length, tf.constant(seed, tf.int32)).numpy()
  np.testing.assert_array_equal(mask, again)  # fixed seed, fixed mask


def test_span_positions_are_random_across_seeds():
  masks = {tuple(sc.random_spans_noise_mask(100, tf.constant((s, 0), tf.int32)).numpy())
           for s in range(20)}
  assert len(masks) == 20
  # Every position is noise for some seed, with frequency near the noise density.
  freq = np.mean([sc.random_spans_noise_mask(100, tf.constant((s, 1), tf.int32)).numpy()
                  for s in range(400)], axis=0)
  assert freq[10:].min() > 0.05 and abs(freq.mean() - 0.15) < 1e-6


@pytest.mark.parametrize("seed", [(0, 0), (5, 9)])
def test_corrupt_replaces_spans_with_sentinels_and_targets_restore_them(seed):
  tokens = tf.range(3, 3 + 141, dtype=tf.int32)
  out = sc.corrupt(tokens, tf.constant(seed, tf.int32), VOCAB_SIZE)
  inputs, targets = out["inputs"].numpy().tolist(), out["targets"].numpy().tolist()
  mask = sc.random_spans_noise_mask(141, tf.constant(seed, tf.int32)).numpy()
  spans = sum(1 for v, _ in _runs(mask.tolist()) if v)
  sentinels = [VOCAB_SIZE - 1 - k for k in range(spans)]
  assert [t for t in inputs if t >= VOCAB_SIZE - 100] == sentinels
  assert [t for t in targets if t >= VOCAB_SIZE - 100] == sentinels
  assert targets[0] == VOCAB_SIZE - 1
  # Each input sentinel k stands for the tokens after target sentinel k.
  pieces, current = {}, None
  for t in targets:
    if t >= VOCAB_SIZE - 100:
      current = t
      pieces[current] = []
    else:
      pieces[current].append(t)
  restored = [x for t in inputs for x in (pieces[t] if t in pieces else [t])]
  assert restored == tokens.numpy().tolist()
  assert len(inputs) == 141 - mask.sum() + spans and len(targets) == mask.sum() + spans


def test_row_lengths_fit_the_inputs_exactly():
  raw, targets = sc.span_corruption_lengths(128)
  assert (raw, targets) == (141, 29)  # 141 - 21 + 7 + EOS = 128; 21 + 7 + EOS = 29
  for length in (32, 64, 114, 512):
    raw, _ = sc.span_corruption_lengths(length)
    noise = round(raw * 0.15)
    assert raw - noise + max(round(noise / 3), 1) + 1 <= length
    noise = round((raw + 1) * 0.15)
    assert raw + 1 - noise + max(round(noise / 3), 1) + 1 > length


def test_pretraining_task_rows(tmp_path):
  with wordnet_testlib.test_wordnet(tmp_path):
    task = seqio.get_mixture_or_task("wordnet_span_corruption_v1")
    ds = task.get_dataset({"inputs": 128, "targets": 32}, split="train", shuffle=False,
                          seed=0)
    rows = list(ds.as_numpy_iterator())
    assert len(rows) >= 5
    for row in rows:
      assert len(row["inputs"]) == 128 and row["inputs"][-1] == 1  # EOS
      assert len(row["targets"]) == 29 and row["targets"][0] == VOCAB_SIZE - 1
    text = bytes(int(t) - 3 for t in rows[0]["inputs"] if 3 <= t < 259).decode()
    assert "sense number" in text or "the" in text
    again = list(task.get_dataset({"inputs": 128, "targets": 32}, split="train",
                                  shuffle=False, seed=0).as_numpy_iterator())
    np.testing.assert_array_equal(rows[0]["inputs"], again[0]["inputs"])
