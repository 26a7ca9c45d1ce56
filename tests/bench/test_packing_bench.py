"""`make bench`'s packing measurement (bench/packing.py): what it counts."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench import packing  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_token_stats_count_non_padding_tokens_padding_and_segments():
  packed = {"encoder_input_tokens": np.array([[5, 6, 7, 8], [5, 6, 0, 0]]),
            "encoder_segment_ids": np.array([[1, 1, 2, 3], [1, 1, 0, 0]]),
            "decoder_target_tokens": np.array([[4, 1], [4, 0]])}
  stats = packing.token_stats([packed])
  assert stats["tokens_per_batch"] == 9  # 6 input + 3 target tokens
  assert np.isclose(stats["padding_fraction"], 1 - 9 / 12)
  assert stats["segments_per_row"] == 2.0  # rows of 3 and 1 segments
  unpacked = {k: v for k, v in packed.items() if k != "encoder_segment_ids"}
  assert packing.token_stats([unpacked, unpacked])["segments_per_row"] == 1.0


def test_prompt_keys_are_l_unpacked_and_t_times_l_packed():
  keys = packing.prompt_keys((512, 128), 16)
  assert keys["encoder"]["unpacked_slots"] == 16
  assert keys["encoder"]["packed_slots"] == packing.NUM_TASKS * 16
  assert np.isclose(keys["decoder"]["packed_extra_pct"], 100.0 * packing.NUM_TASKS * 16 / 128)
