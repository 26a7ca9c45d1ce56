# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The task table saved next to a model (`task_table.json`): re-exported from the library.

The launcher owns every file of MODEL_DIR (`hyperprompt_jax/run_dir.py`, which has
the rules); this module keeps the task package's names for them.
"""

# pylint: disable=unused-import
from hyperprompt_jax.run_dir import (TASK_TABLE as TASK_TABLE_FILENAME, Table,
                                     check_task_table, load_task_table,
                                     save_or_check_task_table, save_task_table,
                                     task_table_path)
