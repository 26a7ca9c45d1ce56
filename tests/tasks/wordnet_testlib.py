"""A small WordNet-format database written by the tests (read through nltk's real reader).

`write_database(directory)` writes `data.*`, `index.*`, `*.exc`, `index.sense` in
WordNet 3.0's file formats (`man 5 wndb`): data lines start with their own byte
offset, pointers name target offsets, index lines list a lemma's synset offsets.
There is no `lexnames` file, as in Debian's packages. The database is generated
from a deterministic vocabulary of made-up words so that every task, including
the by-lemma split, has examples in every split.
"""
import collections
import contextlib
import os
from typing import Dict, List, Tuple
from unittest import mock

from hyperprompt_tasks import wordnet_data

_HEADER = ("  1 This software and database is being provided to you, the LICENSEE, by  \n"
           "  2 Princeton University under the following license (test copy).  \n"
           "  3 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.  \n")
_POS_FILE = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
_LEXNAME = {"n": "noun.animal", "v": "verb.motion", "a": "adj.all", "s": "adj.all",
            "r": "adv.all"}
_SYLLABLES = ("ka", "lo", "mi", "nu", "pe", "ri", "sa", "tu", "vo", "ze")


def _word(i: int) -> str:
  out = ""
  i += 100
  while i:
    out += _SYLLABLES[i % 10]
    i //= 10
  return out


def synsets() -> List[dict]:
  """The test synsets: {key, pos, lexname, lemmas, definition, examples, pointers}."""
  out = []
  lexnames = {"n": ("noun.animal", "noun.plant", "noun.artifact"),
              "v": ("verb.motion", "verb.change"), "a": ("adj.all",), "r": ("adv.all",)}
  k = 0
  for pos, count in (("n", 120), ("v", 60), ("a", 40), ("r", 30)):
    for i in range(count):
      w1, w2 = _word(k), _word(k + 1000)
      lemmas = [w1, w2] if i % 3 == 0 else [w1]
      out.append({
          "key": f"{pos}{i}", "pos": pos, "lexname": lexnames[pos][i % len(lexnames[pos])],
          "lemmas": lemmas,
          "definition": f"a {_LEXNAME[pos].split('.')[0]} sense number {i} of the {pos} kind",
          "examples": [f"the {w1} went home", f"a {w1} was seen"] if i % 2 == 0 else
                      [f"we saw {w1} today"],
          "pointers": []})
      k += 1
  by_key = {s["key"]: s for s in out}
  for i in range(1, 120):  # hypernyms: n<i> -> n<i // 2>
    by_key[f"n{i}"]["pointers"].append(("@", f"n{i // 2}", 0, 0))
    by_key[f"n{i // 2}"]["pointers"].append(("~", f"n{i}", 0, 0))
  for i in range(0, 40, 2):  # antonyms between adjective lemmas a<i>, a<i+1>
    by_key[f"a{i}"]["pointers"].append(("!", f"a{i + 1}", 1, 1))
    by_key[f"a{i + 1}"]["pointers"].append(("!", f"a{i}", 1, 1))
  # A second sense of some noun lemmas (a verb use), for WiC negatives.
  for i in range(0, 60, 2):
    by_key[f"v{i}"]["lemmas"].append(by_key[f"n{i}"]["lemmas"][0])
    by_key[f"v{i}"]["examples"].append(f"they {by_key[f'n{i}']['lemmas'][0]} often")
  return out


def _line(s, offsets, lexnames) -> str:
  words = " ".join(f"{w} 0" for w in s["lemmas"])
  pointers = " ".join(
      f"{sym} {offsets[target]:08d} {target_pos(target)} {src:02x}{dst:02x}"
      for sym, target, src, dst in s["pointers"])
  frames = " 00" if s["pos"] == "v" else ""
  gloss = s["definition"] + "".join(f'; "{e}"' for e in s["examples"])
  body = (f"{offsets[s['key']]:08d} {lexnames.index(s['lexname']):02d} {s['pos']} "
          f"{len(s['lemmas']):02x} {words} {len(s['pointers']):03d}"
          + (f" {pointers}" if pointers else "") + frames)
  return f"{body} | {gloss}  \n"


def target_pos(key: str) -> str:
  return key[0]


def write_database(directory: str) -> List[dict]:
  """Writes the test database into `directory`; returns the synsets written."""
  os.makedirs(directory, exist_ok=True)
  all_synsets = synsets()
  lexnames = list(wordnet_data.LEXNAMES)
  by_file: Dict[str, List[dict]] = collections.defaultdict(list)
  for s in all_synsets:
    by_file[_POS_FILE[s["pos"]]].append(s)
  # Line lengths do not depend on offset values (8 digits), so two passes suffice.
  offsets = {s["key"]: 0 for s in all_synsets}
  for _ in range(2):
    for name, items in by_file.items():
      position = len(_HEADER.encode())
      for s in items:
        offsets[s["key"]] = position
        position += len(_line(s, offsets, lexnames).encode())
  for name in ("noun", "verb", "adj", "adv"):
    items = by_file.get(name, [])
    with open(os.path.join(directory, f"data.{name}"), "w", newline="\n") as f:
      f.write(_HEADER + "".join(_line(s, offsets, lexnames) for s in items))
    index: Dict[Tuple[str, str], List[int]] = collections.defaultdict(list)
    for s in items:
      for w in s["lemmas"]:
        index[(w.lower(), "a" if s["pos"] == "s" else s["pos"])].append(offsets[s["key"]])
    with open(os.path.join(directory, f"index.{name}"), "w") as f:
      f.write(_HEADER)
      for (lemma, pos), offs in sorted(index.items()):
        f.write(f"{lemma} {pos} {len(offs)} 0 {len(offs)} 0 "
                + " ".join(f"{o:08d}" for o in offs) + "  \n")
    open(os.path.join(directory, f"{name}.exc"), "w").close()
  with open(os.path.join(directory, "index.sense"), "w") as f:
    for s in all_synsets:
      for w in s["lemmas"]:
        f.write(f"{w.lower()}%1:05:00:: {offsets[s['key']]:08d} 1 0\n")
  return all_synsets


@contextlib.contextmanager
def test_wordnet(tmp_path):
  """WORDNET_DIR -> a fresh test database, layout and caches under `tmp_path`."""
  from hyperprompt_tasks import wordnet  # pylint: disable=g-import-not-at-top
  source = os.path.join(str(tmp_path), "dict")
  written = write_database(source)
  env = {wordnet_data.WORDNET_DIR_ENV: source,
         wordnet_data.LAYOUT_ENV: os.path.join(str(tmp_path), "nltk_data")}
  with mock.patch.dict(os.environ, env):
    wordnet._all_examples.cache_clear()  # pylint: disable=protected-access
    wordnet._pretraining_texts.cache_clear()  # pylint: disable=protected-access
    try:
      yield written
    finally:
      wordnet._all_examples.cache_clear()  # pylint: disable=protected-access
      wordnet._pretraining_texts.cache_clear()  # pylint: disable=protected-access
