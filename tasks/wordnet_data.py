# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Where WordNet 3.0 lives, and how it is read (nltk's own WordNet reader).

**Where.** `wordnet_source()` looks, in this order, at

1. `$WORDNET_DIR` (a WordNet `dict/` directory: `data.noun`, `index.noun`, ...;
   when set it must be valid, there is no silent fallback);
2. Debian's `/usr/share/wordnet` (`apt-get install wordnet-base wordnet-sense-index`);
3. nltk's data path (`nltk.download('wordnet')`: `<NLTK_DATA>/corpora/wordnet[.zip]`).

If none has WordNet, one `WordNetNotFound` error says how to get it.

**Layout.** nltk 3.10 only opens files inside its data path, and refuses
symbolic and hard links. A source outside nltk's data path (Debian's, or any
`$WORDNET_DIR`) is therefore *copied* once into `<layout>/corpora/wordnet/`,
where `<layout>` is `$HYPERPROMPT_NLTK_DATA` (default
`~/.cache/hyperprompt_jax/nltk_data`), and the small `lexnames` file, which
Debian does not ship, is written there from `LEXNAMES` (its 45 lines are fixed
by WordNet's documentation, `man 5 lexnames`). `<layout>` is added to
`nltk.data.path` and read with `nltk.corpus.reader.WordNetCorpusReader`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import warnings
from typing import Optional, Tuple

from hyperprompt_jax import errors

WORDNET_DIR_ENV = "WORDNET_DIR"
LAYOUT_ENV = "HYPERPROMPT_NLTK_DATA"
DEBIAN_WORDNET_DIR = "/usr/share/wordnet"
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
NLTK_COMMAND = "python -c \"import nltk; nltk.download('wordnet')\""

# The files nltk's reader opens (index.sense: sense keys; cntlist.rev: counts).
REQUIRED_FILES = ("data.adj", "data.adv", "data.noun", "data.verb",
                  "index.adj", "index.adv", "index.noun", "index.verb",
                  "adj.exc", "adv.exc", "noun.exc", "verb.exc")
OPTIONAL_FILES = ("index.sense", "cntlist.rev")

# WordNet's lexicographer files, `man 5 lexnames`: (number, name, syntactic category
# 1 noun, 2 verb, 3 adjective, 4 adverb); line k of `lexnames` is file number k.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class WordNetNotFound(errors.ConfigError):
  """WordNet 3.0 is not installed where we look (the message says how to get it)."""


def lexnames_text() -> str:
  """The content of WordNet's `lexnames` file: `NN<TAB>name<TAB>category` lines."""
  return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n"
                 for i, name in enumerate(LEXNAMES))


def layout_root() -> str:
  """`<layout>`: the nltk data directory our copy of WordNet goes to."""
  return os.path.abspath(os.path.expanduser(
      os.environ.get(LAYOUT_ENV) or os.path.join("~", ".cache", "hyperprompt_jax", "nltk_data")))


def _missing(directory: str) -> Tuple[str, ...]:
  return tuple(f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(directory, f)))


def how_to_get_it() -> str:
  return (f"install WordNet 3.0: as root on Debian/Ubuntu `apt-get install -y "
          f"{' '.join(DEBIAN_PACKAGES)}` (read from {DEBIAN_WORDNET_DIR}), or `{NLTK_COMMAND}`, "
          f"or set {WORDNET_DIR_ENV} to a WordNet 3.0 dict/ directory")


@dataclasses.dataclass(frozen=True)
class Source:
  """Where WordNet was found: a directory to copy from, or an nltk resource to read."""
  kind: str  # "directory" (WORDNET_DIR or Debian) or "nltk" (already in nltk's data path)
  path: str


def wordnet_source() -> Source:
  """The WordNet to read (see the module docstring for the order); raises WordNetNotFound."""
  env = os.environ.get(WORDNET_DIR_ENV)
  if env:
    missing = _missing(env)
    if missing:
      raise WordNetNotFound(
          f"{WORDNET_DIR_ENV}={env!r} is not a WordNet dict/ directory: it lacks "
          f"{', '.join(missing)}; point it at one, or unset it and {how_to_get_it()}")
    return Source("directory", os.path.abspath(env))
  if not _missing(DEBIAN_WORDNET_DIR):
    return Source("directory", DEBIAN_WORDNET_DIR)
  import nltk  # pylint: disable=g-import-not-at-top
  try:
    found = nltk.data.find("corpora/wordnet")
    return Source("nltk", str(found))
  except LookupError:
    pass
  raise WordNetNotFound(f"WordNet 3.0 was not found ({WORDNET_DIR_ENV} unset, nothing in "
                        f"{DEBIAN_WORDNET_DIR} or nltk's data path); {how_to_get_it()}.")


def prepare_layout(source_dir: str, root: Optional[str] = None) -> str:
  """Copies WordNet from `source_dir` into `<root>/corpora/wordnet` (+ lexnames); returns it.

  Files already copied with the same size are kept; nothing else in `root` is touched.
  """
  root = root or layout_root()
  target = os.path.join(root, "corpora", "wordnet")
  os.makedirs(target, exist_ok=True)
  for name in REQUIRED_FILES + OPTIONAL_FILES:
    src, dst = os.path.join(source_dir, name), os.path.join(target, name)
    if not os.path.isfile(src):
      continue
    if os.path.isfile(dst) and not os.path.islink(dst) and (
        os.path.getsize(dst) == os.path.getsize(src)):
      continue
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)  # a real file: nltk refuses links
    os.replace(tmp, dst)
  lexnames = os.path.join(source_dir, "lexnames")
  text = open(lexnames).read() if os.path.isfile(lexnames) else lexnames_text()
  with open(os.path.join(target, "lexnames"), "w") as f:
    f.write(text)
  return target


@functools.lru_cache(maxsize=4)
def _reader(kind: str, path: str, root: str):
  import nltk  # pylint: disable=g-import-not-at-top
  from nltk.corpus.reader import wordnet as nltk_wordnet  # pylint: disable=g-import-not-at-top
  if kind == "directory":
    prepare_layout(path, root)
    if root not in nltk.data.path:
      nltk.data.path.append(root)
    pointer = nltk.data.find("corpora/wordnet", paths=[root])
  else:
    pointer = nltk.data.find("corpora/wordnet")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "multilingual functions are not available"
    return nltk_wordnet.WordNetCorpusReader(pointer, None)


def load_wordnet():
  """nltk's `WordNetCorpusReader` over the WordNet of `wordnet_source()` (cached)."""
  source = wordnet_source()
  return _reader(source.kind, source.path, layout_root())


def source_key() -> str:
  """A string naming the WordNet read now (for caches of derived data)."""
  source = wordnet_source()
  if source.kind != "directory":
    return f"{source.kind}:{source.path}"
  sizes = [os.path.getsize(os.path.join(source.path, f)) for f in REQUIRED_FILES]
  return f"{source.kind}:{source.path}:{sizes}"


def install(allow_apt: bool = True) -> Source:
  """`make quality`'s set-up: WordNet found, or installed with apt as root, or one error."""
  try:
    return wordnet_source()
  except WordNetNotFound:
    if not (allow_apt and os.environ.get(WORDNET_DIR_ENV) is None and hasattr(os, "geteuid")
            and os.geteuid() == 0 and shutil.which("apt-get")):
      raise
  print(f"WordNet not found; installing {' '.join(DEBIAN_PACKAGES)} with apt-get.", flush=True)
  subprocess.run(["apt-get", "install", "-y", *DEBIAN_PACKAGES], check=True)
  return wordnet_source()


def main() -> int:
  """`python -m hyperprompt_tasks.wordnet_data`: find (or install) WordNet and lay it out."""
  try:
    source = install()
  except WordNetNotFound as e:
    print(f"error: {e}", flush=True)
    return 1
  wn = load_wordnet()
  print(f"WordNet {wn.get_version()} from {source.path} ({source.kind}), read by nltk from "
        f"{layout_root()}", flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
