"""`python tests/multihost_child.py MODULE ARGS...`: runs `python -m MODULE ARGS...` and logs
every file this process opens for writing, creates or renames into place.

The log (one absolute path per line) goes to `$HYPERPROMPT_TEST_WRITE_LOG` when that is set;
the multi-process tests read it to check that process 1 writes no summary or JSON file.
Python's audit hooks see writes made through Python (`open`, `os.replace`, `os.mkdir`: the
launcher's JSON files, Orbax's metadata); writes made in C++ (TensorFlow's event files,
TensorStore's arrays) are not seen (the tests attribute event files by the pid in their name).
"""
import os
import runpy
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _install(log_path):
  log = open(log_path, "a", buffering=1)  # pylint: disable=consider-using-with

  def record(path):
    if isinstance(path, (str, bytes, os.PathLike)):
      log.write(os.path.abspath(os.fsdecode(path)) + "\n")

  def hook(event, args):
    if event == "open":
      path, mode, flags = args
      writing = (any(c in mode for c in "wax+") if isinstance(mode, str)
                 else bool((flags or 0) & _WRITE_FLAGS))
      if writing:
        record(path)
    elif event in ("os.rename", "os.replace"):
      record(args[1])
    elif event == "os.mkdir":
      record(args[0])

  sys.addaudithook(hook)


def main():
  log_path = os.environ.get("HYPERPROMPT_TEST_WRITE_LOG")
  if log_path:
    _install(log_path)
  module = sys.argv[1]
  sys.argv = [module] + sys.argv[2:]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
