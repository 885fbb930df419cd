"""The labels file: class names in label order, one definition.

::

    {"format": "mr_tl.labels/1", "classes": ["001.ak47", "002.american-flag", ...]}

``pack`` writes it as ``labels.json`` beside the shards, featurize copies it
as ``_labels.json`` beside the feature files (a leading ``_`` so Hadoop
never reads it as data), a training run keeps it as ``labels.json``.  Every
reader goes through :func:`parse`, which refuses anything else with a
one-line message.
"""

import json
from collections.abc import Iterable, Sequence

from mr_tl.errors import InputError

FORMAT = "mr_tl.labels/1"


def dumps(classes: Iterable[str]) -> str:
    """The text of a labels file for ``classes``."""
    return json.dumps({"format": FORMAT, "classes": list(classes)}, indent=1, ensure_ascii=False) + "\n"


def parse(text: str | bytes, where: str = "labels file") -> list[str]:
    """The class names of a labels file's text; InputError if it is not one."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
        raise InputError("%s is not valid JSON: %s" % (where, e)) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("classes"), list):
        raise InputError("%s is not an mr_tl labels file (expected {\"format\": \"%s\", \"classes\": [...]})"
                         % (where, FORMAT))
    classes = obj["classes"]
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise InputError("%s: classes must be a non-empty list of non-empty names" % where)
    if len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if classes.count(c) > 1})
        raise InputError("%s names class(es) more than once: %s" % (where, ", ".join(twice[:5])))
    return list(classes)


def read(path: str) -> list[str]:
    """The class names of a local labels file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError("labels file %s is missing" % path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("cannot read labels file %s: %s" % (path, e)) from None
    return parse(text, path)


def agreed(found: Sequence[tuple[str, list[str]]]) -> list[str]:
    """The one class list ``found`` (``[(input, classes)]``) agree on; InputError naming the first difference."""
    first_path, first = found[0]
    for path, classes in found[1:]:
        if classes != first:
            only_a = [c for c in first if c not in classes]
            only_b = [c for c in classes if c not in first]
            what = ("different classes (the same names in another order)" if not only_a and not only_b else
                    "different classes (only in the first: %s; only in the second: %s)"
                    % (", ".join(only_a[:3]) or "-", ", ".join(only_b[:3]) or "-"))
            raise InputError("the inputs name %s: %s has %d classes, %s has %d; their label numbers would "
                             "not mean the same classes (pack them from one image folder)"
                             % (what, first_path, len(first), path, len(classes)))
    return first
