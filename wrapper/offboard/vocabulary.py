"""The record vocabulary, as the collection defines it: plugins/module_utils/offboard_vocabulary.py.

One definition for the wrapper, the evidence callback, the action plugins and the modules. Inside an Ansible
run (the evidence callback imports the wrapper) Ansible's collection loader imports it as
ansible_collections.offboard.msp.plugins.module_utils.offboard_vocabulary. Outside one (the wrapper's own
commands) the file is read from the project (the checkout this package is in, else $OFFBOARD_PROJECT_DIR)
under a private name: importing it through the ansible_collections namespace here would fix that namespace
before Ansible's collection loader starts in this process (offboard.guard) and break the loader.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

MODULE = "ansible_collections.offboard.msp.plugins.module_utils.offboard_vocabulary"
_RELATIVE = Path("plugins") / "module_utils" / "offboard_vocabulary.py"
_PRIVATE = "offboard._collection_vocabulary"


def _in_ansible() -> bool:
    return any(type(finder).__name__ == "_AnsibleCollectionFinder" for finder in sys.meta_path)


def _candidates() -> list[Path]:
    files = [Path(__file__).resolve().parents[2] / _RELATIVE]
    try:
        from offboard.paths import project_root

        files.append(project_root() / _RELATIVE)
    except FileNotFoundError:
        pass
    return [f for f in files if f.is_file()]


def _load() -> ModuleType:
    if _in_ansible():
        return importlib.import_module(MODULE)
    if _PRIVATE in sys.modules:
        return sys.modules[_PRIVATE]
    for path in _candidates():
        spec = importlib.util.spec_from_file_location(_PRIVATE, path)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[_PRIVATE] = module
            spec.loader.exec_module(module)
            return module
    raise ImportError(
        f"cannot find the collection offboard.msp ({_RELATIVE}): run from the repository or set "
        "OFFBOARD_PROJECT_DIR to it"
    )


_vocabulary = _load()

PHASES: tuple[str, ...] = _vocabulary.PHASES
ACTIONS: tuple[str, ...] = _vocabulary.ACTIONS
DONE_ACTIONS: tuple[str, ...] = _vocabulary.DONE_ACTIONS
VERIFICATION_RESULTS: tuple[str, ...] = _vocabulary.VERIFICATION_RESULTS
OUTCOMES: tuple[str, ...] = _vocabulary.OUTCOMES
RUN_KINDS: tuple[str, ...] = _vocabulary.RUN_KINDS
CHECKLIST_KINDS: tuple[str, ...] = _vocabulary.CHECKLIST_KINDS
KINDS: tuple[str, ...] = _vocabulary.KINDS
SECRET_WORDS: frozenset[str] = _vocabulary.SECRET_WORDS
SECRET_PAIRS: frozenset[tuple[str, str]] = _vocabulary.SECRET_PAIRS
looks_secret = _vocabulary.looks_secret
names_secret = _vocabulary.names_secret
secret_keys = _vocabulary.secret_keys
check_item_args = _vocabulary.check_item_args
