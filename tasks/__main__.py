# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""`python -m hyperprompt_tasks [NAME ...]`: task tables, rates and chance levels.

Without names it lists the registered mixtures. Nothing is downloaded: rates
come from the documented training-set sizes and sentinels are printed as
`<extra_id_k>` (their ids need the vocabulary file for SentencePiece models).
"""

from __future__ import annotations

import sys

import seqio

import hyperprompt_tasks as ht


def describe(name: str) -> str:
  provider = ht.get_mixture_or_task(name)
  table = ht.task_table(name)
  vocab = ht.get_vocabulary(name)
  lines = [f"{name}: num_tasks={len(table)}, vocabulary={type(vocab).__name__}"]
  rates = {}
  if isinstance(provider, seqio.Mixture):
    for task in provider.tasks:
      rates.setdefault(ht.task_binding(task.name).index, []).append(
          (ht.task_binding(task.name).base, provider.get_rate(task)))
  else:
    rates[0] = [(ht.task_binding(name).base, None)]
  for k, identity in enumerate(table):
    for base, rate in rates.get(k, [(identity, None)]):
      chance = ""
      if base and ht.offline.rule_of(base):
        chance = f"  chance {ht.offline.chance_accuracy(base):.2f}"
      rate_text = "" if rate is None else f"  rate {rate:g}"
      lines.append(f"  {k:2d} <extra_id_{k}>  {base}{rate_text}{chance}")
  return "\n".join(lines)


def main(argv) -> int:
  names = argv[1:] or sorted(m for m in seqio.MixtureRegistry.names())
  try:
    print("\n".join(describe(n) for n in names))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
