# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Task-indexed seqio registration: every example knows its task.

**The scheme.** A mixture's *task table* is the tuple of task identities in
index order: the distinct identities of its tasks in the order the mixture
lists them. Task k of the table is marked by the sentinel `<extra_id_k>`
(id `vocab_size - 1 - k`), prepended to the tokenized inputs of every example
(`preprocessors.add_task_sentinel`; the network reads it back with
`hyperprompt_jax.task_ids`). Eval-only twins share the identity (and so the
index) of the task they evaluate: `glue_mnli_matched_v002`,
`glue_mnli_mismatched_v002` and `glue_ax_v002` are evaluated as
`glue_mnli_v002`, SuperGLUE's `axb`/`axg` as `super_glue_rte_v102`,
`super_glue_wsc_v102_simple_eval` as `super_glue_wsc_v102_simple_train`.

**Binding.** The index is part of the registered seqio task, so it reaches
training, `seqio.Evaluator` and inference alike with no global state:

* `register_task(name, ...)` registers `name` itself at index 0 (its own
  one-task table) and keeps its spec;
* `register_mixture(name, tasks)` accepts tasks registered with `register_task`
  and any other registered seqio task, e.g. one another project added with
  `seqio.TaskRegistry.add` (its preprocessors must contain seqio's `tokenize` or
  `tokenize_and_append_eos`; the task sentinel goes in right after that step); it
  derives the table, registers for every task at index k the variant `indexed_task_name(task, k)` = `"<task>_task_index_<k>"`
  (shared by all mixtures that put the task at k), and registers the mixture of
  those variants with the given rates.

`task_table(name)` reads the table back from the (index, identity) bindings of
the leaves of any task or mixture made of such tasks, so it is deterministic
and cannot disagree with the data.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

import seqio

from hyperprompt_tasks import preprocessors as hp_preprocessors

INDEX_SUFFIX = "_task_index_"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """How to build a task; `preprocessors` are the text steps before tokenization."""
  name: str
  source: seqio.DataSourceInterface
  preprocessors: Tuple[Callable[..., Any], ...]
  output_features: Mapping[str, seqio.Feature]
  postprocess_fn: Optional[Callable[..., Any]] = None
  metric_fns: Tuple[Callable[..., Any], ...] = ()
  index_as: Optional[str] = None  # identity: the task whose index this one uses
  train_size: Optional[int] = None  # training examples (0: eval-only), for mixing rates
  # Set for another project's seqio task: `preprocessors` are its whole list (tokenization
  # included) and the task sentinel is inserted after its tokenize step.
  foreign: bool = False
  metric_objs: Tuple[Any, ...] = ()

  @property
  def identity(self) -> str:
    return self.index_as or self.name


@dataclasses.dataclass(frozen=True)
class TaskBinding:
  """A registered seqio task's base spec, identity and task index."""
  base: str
  identity: str
  index: int


_SPECS: dict[str, TaskSpec] = {}
_FOREIGN: dict[str, TaskSpec] = {}
_BINDINGS: dict[str, TaskBinding] = {}
_TOKENIZE_FNS = (seqio.preprocessors.tokenize, seqio.preprocessors.tokenize_and_append_eos)


def indexed_task_name(name: str, index: int) -> str:
  """Name of the variant of task `name` that carries task index `index`."""
  return f"{name}{INDEX_SUFFIX}{int(index)}"


def get_spec(name: str) -> TaskSpec:
  """The spec of a task of `register_task`, or of any other registered seqio task."""
  if name in _SPECS:
    return _SPECS[name]
  if name in _FOREIGN:
    return _FOREIGN[name]
  if name in seqio.TaskRegistry.names() and name not in _BINDINGS:
    _FOREIGN[name] = _foreign_spec(seqio.get_mixture_or_task(name))
    return _FOREIGN[name]
  raise ValueError(f"{name!r} is neither registered with hyperprompt_tasks.register_task "
                   f"nor a registered seqio task{_closest_hint(name, list(_SPECS))}")


def _is_tokenize_step(fn: Any) -> bool:
  return getattr(fn, "func", fn) in _TOKENIZE_FNS


def _foreign_spec(task: seqio.Task) -> TaskSpec:
  """The spec of another project's seqio task (`seqio.TaskRegistry.add`)."""
  steps = tuple(task.preprocessors)
  if not any(_is_tokenize_step(p) for p in steps):
    raise ValueError(
        f"seqio task {task.name!r} has no seqio.preprocessors.tokenize (or "
        "tokenize_and_append_eos) step, so there is no place for the task sentinel; add "
        "that step to its preprocessors")
  if "inputs" not in task.output_features:
    raise ValueError(f"seqio task {task.name!r} has no 'inputs' feature for the task sentinel")
  try:
    train_size = task.num_input_examples("train")
  except Exception:  # pylint: disable=broad-except
    train_size = None  # unknown: give the mixture explicit rates
  return TaskSpec(name=task.name, source=task.source, preprocessors=steps,
                  output_features=dict(task.output_features),
                  postprocess_fn=task.postprocessor,
                  metric_fns=tuple(task._metric_fn_constructor_args),  # pylint: disable=protected-access
                  train_size=train_size, foreign=True,
                  metric_objs=tuple(task._metric_objs_constructor_args))  # pylint: disable=protected-access


def registered_specs() -> Tuple[str, ...]:
  """Names of all base tasks registered through `register_task`, in order."""
  return tuple(_SPECS)


def task_binding(name: str) -> TaskBinding:
  """(base task, identity, index) of a registered task-indexed seqio task."""
  if name not in _BINDINGS:
    get_mixture_or_task(name)  # Unknown names: error with the closest names.
    raise ValueError(
        f"task {name!r} carries no task index: register it with "
        "hyperprompt_tasks.register_task (and mix it with register_mixture) so that "
        "its examples start with their task sentinel.")
  return _BINDINGS[name]


def _seqio_preprocessors(spec: TaskSpec, index: int) -> list:
  sentinel = functools.partial(hp_preprocessors.add_task_sentinel, task_index=index,
                               task_identity=spec.identity)
  if spec.foreign:
    steps = list(spec.preprocessors)
    at = next(i for i, p in enumerate(steps) if _is_tokenize_step(p)) + 1
    return steps[:at] + [sentinel] + steps[at:]
  return [
      *spec.preprocessors,
      seqio.preprocessors.tokenize,
      seqio.CacheDatasetPlaceholder(),
      sentinel,
      seqio.preprocessors.append_eos_after_trim,
  ]


def _add_seqio_task(seqio_name: str, spec: TaskSpec, index: int) -> seqio.Task:
  task = seqio.TaskRegistry.add(
      seqio_name,
      source=spec.source,
      preprocessors=_seqio_preprocessors(spec, index),
      output_features=spec.output_features,
      postprocess_fn=spec.postprocess_fn,
      metric_fns=list(spec.metric_fns),
      metric_objs=list(spec.metric_objs) or None)
  _BINDINGS[seqio_name] = TaskBinding(base=spec.name, identity=spec.identity, index=index)
  return task


def register_task(name: str, *, source: seqio.DataSourceInterface,
                  preprocessors: Sequence[Callable[..., Any]],
                  output_features: Mapping[str, seqio.Feature],
                  postprocess_fn: Optional[Callable[..., Any]] = None,
                  metric_fns: Sequence[Callable[..., Any]] = (),
                  index_as: Optional[str] = None,
                  train_size: Optional[int] = None) -> seqio.Task:
  """Registers seqio task `name` (task index 0) and keeps its spec for mixtures.

  `preprocessors` map source examples to `{"inputs": text, "targets": text, ...}`;
  tokenization, the cache placeholder, the task sentinel and EOS are appended.
  `index_as` names the task whose index (and so task embedding) this task shares
  (eval-only twins). `train_size` (training examples, 0 for eval-only) feeds
  `rate_num_examples` without reading dataset metadata.
  """
  if "inputs" not in output_features or "targets" not in output_features:
    raise ValueError(f"task {name!r} needs 'inputs' and 'targets' output features")
  if name in _SPECS or name in seqio.TaskRegistry.names():
    raise ValueError(f"task {name!r} is already registered")
  if INDEX_SUFFIX in name:
    raise ValueError(f"task names may not contain {INDEX_SUFFIX!r} (reserved): {name!r}")
  spec = TaskSpec(name=name, source=source, preprocessors=tuple(preprocessors),
                  output_features=dict(output_features), postprocess_fn=postprocess_fn,
                  metric_fns=tuple(metric_fns), index_as=index_as, train_size=train_size)
  task = _add_seqio_task(name, spec, 0)
  _SPECS[name] = spec
  return task


def ensure_indexed_task(name: str, index: int) -> str:
  """Registers (once) the variant of task `name` at `index`; returns its name.

  `name` is a task of `register_task` or any registered seqio task (see the module doc).
  """
  spec = get_spec(name)
  variant = indexed_task_name(name, index)
  if variant in _BINDINGS:
    return variant
  _add_seqio_task(variant, spec, index)
  return variant


def derive_task_table(task_names: Sequence[str]) -> Tuple[str, ...]:
  """Distinct identities of the base tasks `task_names`, in order of first appearance."""
  table: list[str] = []
  for name in task_names:
    identity = get_spec(name).identity
    if identity not in table:
      table.append(identity)
  return tuple(table)


MixtureRate = Union[float, Callable[[seqio.Task], float]]


def register_mixture(name: str, tasks: Sequence[Union[str, Tuple[str, MixtureRate]]],
                     default_rate: Optional[MixtureRate] = None) -> seqio.Mixture:
  """Registers a task-indexed seqio mixture of tasks (`name` or `(name, rate)`).

  A task is one of `register_task`'s or any other registered seqio task, such as
  one another project added with `seqio.TaskRegistry.add`.

  Task indices follow `derive_task_table` over the listed order; a rate may be a
  number or a function of the seqio task (e.g. `rate_num_examples()`). Appending
  tasks keeps earlier indices; reordering changes them (and is caught by
  `task_table_io.check_task_table` against a saved run).
  """
  if name in seqio.MixtureRegistry.names() or name in seqio.TaskRegistry.names():
    raise ValueError(f"mixture {name!r} is already registered")
  entries = [(t, None) if isinstance(t, str) else tuple(t) for t in tasks]
  if not entries:
    raise ValueError(f"mixture {name!r} has no tasks")
  names = [t for t, _ in entries]
  duplicates = sorted({t for t in names if names.count(t) > 1})
  if duplicates:
    raise ValueError(f"mixture {name!r} lists tasks more than once: {duplicates}")
  table = derive_task_table(names)
  indexed = []
  for task, rate in entries:
    variant = ensure_indexed_task(task, table.index(get_spec(task).identity))
    indexed.append(variant if rate is None else (variant, rate))
  return seqio.MixtureRegistry.add(name, indexed, default_rate=default_rate)


def rate_num_examples(maximum: Optional[float] = None, temperature: float = 1.0,
                      scale: float = 1.0) -> Callable[[seqio.Task], float]:
  """Examples-proportional rate `min(scale * n, maximum) ** (1 / temperature)`.

  Like `seqio.mixing_rate_num_examples`, but `n` is the spec's documented
  `train_size`, so no dataset metadata is read (nothing is downloaded).
  """
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}")

  def rate(task: seqio.Task) -> float:
    spec = get_spec(task_binding(task.name).base)
    if spec.train_size is None:
      raise ValueError(f"task {spec.name!r} has no train_size; give the mixture explicit "
                       "rates or register the task with train_size=")
    n = spec.train_size * scale
    if maximum is not None:
      n = min(n, maximum)
    return float(n) ** (1.0 / temperature) if n > 0 else 0.0

  return rate


def _closest_hint(name: str, candidates: Sequence[str]) -> str:
  plain = [c for c in candidates if INDEX_SUFFIX not in c]
  close = difflib.get_close_matches(name, plain, n=5, cutoff=0.6)
  close += [c for c in difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
            if c not in close]
  return f"; closest registered names: {', '.join(close[:5])}" if close else ""


def get_mixture_or_task(name: str) -> Union[seqio.Task, seqio.Mixture]:
  """seqio's task or mixture `name`; unknown names raise ValueError with the closest ones."""
  if name in seqio.MixtureRegistry.names() or name in seqio.TaskRegistry.names():
    return seqio.get_mixture_or_task(name)
  known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
  hint = _closest_hint(name, known) or "; no registered name is close (is the task module imported?)"
  raise ValueError(f"no seqio task or mixture named {name!r}{hint}")


def task_table(name: str) -> Tuple[Optional[str], ...]:
  """The task table of a task or mixture: identity names in task-index order.

  A mixture that leaves an index unused (e.g. one indexed variant evaluated on
  its own) has `None` there; `len(table)` is the number of task embeddings the
  model needs.
  """
  provider = get_mixture_or_task(name)
  by_index: dict[int, str] = {}
  index_of: dict[str, int] = {}
  for task in seqio.get_subtasks(provider):
    b = task_binding(task.name)
    if by_index.get(b.index, b.identity) != b.identity:
      raise ValueError(f"{name!r} puts {by_index[b.index]!r} and {b.identity!r} at the "
                       f"same task index {b.index}")
    if index_of.get(b.identity, b.index) != b.index:
      raise ValueError(f"{name!r} gives task {b.identity!r} two task indices: "
                       f"{index_of[b.identity]} and {b.index}")
    by_index[b.index] = b.identity
    index_of[b.identity] = b.index
  return tuple(by_index.get(i) for i in range(max(by_index) + 1))


def num_tasks(name: str) -> int:
  """Number of task indices (`T5Config.num_tasks`) the task or mixture needs."""
  return len(task_table(name))


def get_vocabulary(name: str) -> seqio.Vocabulary:
  """The inputs vocabulary of a task or mixture (not loaded until used)."""
  return get_mixture_or_task(name).output_features["inputs"].vocabulary


@dataclasses.dataclass(frozen=True)
class MixtureInfo:
  """What a launcher needs to configure the model for a task or mixture."""
  name: str
  table: Tuple[Optional[str], ...]
  vocabulary: seqio.Vocabulary

  @property
  def num_tasks(self) -> int:
    return len(self.table)

  @property
  def task_sentinel_id(self) -> int:
    """Id of `<extra_id_0>` (`T5Config.task_sentinel_id`); loads the vocabulary."""
    return self.vocabulary.vocab_size - 1


def mixture_info(name: str) -> MixtureInfo:
  """Task table, number of tasks and vocabulary of a registered task or mixture."""
  return MixtureInfo(name=name, table=task_table(name), vocabulary=get_vocabulary(name))
