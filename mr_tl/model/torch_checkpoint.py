"""Read a PyTorch state dict from a legacy ``.pth`` file without unpickling it.

Why: ``torch.load`` is ``pickle.load``, and unpickling runs whatever callables
the file names (``os.system`` as easily as ``OrderedDict``).  mr_tl never
executes a pickle and does not depend on torch, so this module *interprets*
the pickle opcode stream itself (listed by :func:`pickletools.genops`) with a
small stack machine that knows the dozen opcodes a tensor state dict uses and
only three kinds of globals: ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types.  Those
names are never imported or called; they are recognised as markers and
turned into plain records.  Any other global or opcode is refused with
:class:`CheckpointError`.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``,
the default before torch 1.6) is, back to back:

1. a pickle of the magic number ``0x1950a86a20f9469cfc6c``;
2. a pickle of the protocol version, ``1001``;
3. a pickle of a "sys info" dict (``little_endian``, type sizes);
4. the pickled object, here an ``OrderedDict`` name -> tensor, where each
   tensor is ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` and
   each storage is a *persistent id* ``("storage", <torch.FloatStorage>, key,
   location, numel, None)`` instead of data;
5. a pickle of the list of storage keys, in the order their data follows;
6. for each key: its element count as a little-endian int64, then the raw
   elements (little-endian, ``numel * itemsize`` bytes).

The newer zip format (torch >= 1.6) is refused: no file we ship uses it.
"""

import hashlib
import io
import math
import pickletools
import struct
from dataclasses import dataclass

import numpy as np

from mr_tl.errors import ModelError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> element dtype as stored on disk (little-endian).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

_ORDERED_DICT = ("collections", "OrderedDict")
_REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")


class CheckpointError(ModelError):
    """A checkpoint that is not a plain legacy-format tensor state dict (or fails its hash)."""


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple


def _allowed_global(module, name):
    if (module, name) in (_ORDERED_DICT, _REBUILD_TENSOR):
        return _Global(module, name)
    if module == "torch" and name in STORAGE_DTYPES:
        return _Global(module, name)
    raise CheckpointError(
        "refusing the checkpoint: its pickle names %s.%s, which is not part of a plain tensor "
        "state dict (only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and "
        "torch.*Storage are accepted; nothing is ever imported or called)" % (module, name))


def _is_int_tuple(value):
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _persistent_load(pid):
    # ("storage", storage_type, key, location, numel, view_metadata)
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
        raise CheckpointError("unexpected persistent id %r (expected a storage reference)" % (pid,))
    _, kind, key, location, numel, view = pid
    if not (isinstance(kind, _Global) and kind.module == "torch" and kind.name in STORAGE_DTYPES):
        raise CheckpointError("persistent id %r does not name a torch storage type" % (pid,))
    if not (isinstance(key, str) and isinstance(location, str) and isinstance(numel, int) and numel >= 0):
        raise CheckpointError("malformed storage reference %r" % (pid,))
    if view is not None:
        raise CheckpointError("storage views (pre-0.4 torch files) are not supported")
    return _Storage(key, STORAGE_DTYPES[kind.name], numel)


def _reduce(func, args):
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise CheckpointError("REDUCE of %r is not allowed" % (func,))
    if (func.module, func.name) == _ORDERED_DICT:
        if args:
            raise CheckpointError("OrderedDict called with arguments %r" % (args,))
        return {}
    if (func.module, func.name) == _REBUILD_TENSOR:
        # (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if len(args) not in (6, 7):
            raise CheckpointError("_rebuild_tensor_v2 with %d arguments" % len(args))
        storage, offset, shape, stride = args[:4]
        if not (isinstance(storage, _Storage) and isinstance(offset, int) and offset >= 0
                and _is_int_tuple(shape) and _is_int_tuple(stride) and len(shape) == len(stride)):
            raise CheckpointError("malformed tensor record %r" % (args[:4],))
        return _Tensor(storage, offset, shape, stride)
    raise CheckpointError("calling %s.%s is not allowed" % (func.module, func.name))


_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_VALUE_OPS = {"BININT", "BININT1", "BININT2", "LONG1", "BINUNICODE", "SHORT_BINUNICODE",
              "BINUNICODE8", "BINFLOAT"}


def _interpret(stream):
    """Evaluate one pickle from ``stream`` without executing anything.

    Reads exactly up to its STOP opcode, so the caller can go on reading.
    """
    stack, memo, marks = [], {}, []

    def pop_mark():
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                if len(stack) != 1 or marks:
                    raise CheckpointError("pickle ends with a malformed stack")
                return stack[0]
            if name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name in _VALUE_OPS:
                stack.append(arg)
            elif name == "MARK":
                marks.append(len(stack))
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise CheckpointError("%s on a stack of %d items" % (name, len(stack)))
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "APPEND":
                value = stack.pop()
                stack[-1].append(value)
            elif name == "APPENDS":
                items = pop_mark()
                stack[-1].extend(items)
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1][key] = value
            elif name == "SETITEMS":
                items = pop_mark()
                if len(items) % 2:
                    raise CheckpointError("SETITEMS with an odd number of items")
                target = stack[-1]
                for key, value in zip(items[::2], items[1::2]):
                    target[key] = value
            elif name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                stack.append(_allowed_global(module, attr))
            elif name == "STACK_GLOBAL":
                attr, module = stack.pop(), stack.pop()
                if not (isinstance(module, str) and isinstance(attr, str)):
                    raise CheckpointError("STACK_GLOBAL with non-string operands")
                stack.append(_allowed_global(module, attr))
            elif name == "BINPERSID":
                stack.append(_persistent_load(stack.pop()))
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                stack.append(_reduce(func, args))
            elif name == "BUILD":
                # torch sets the state dict's ``_metadata`` attribute (module
                # versions) this way; it carries no tensor data, so drop it.
                state = stack.pop()
                if not (isinstance(stack[-1], dict) and isinstance(state, dict)):
                    raise CheckpointError("BUILD on %r is not allowed" % (type(stack[-1]).__name__,))
            else:
                raise CheckpointError("pickle opcode %s is not allowed in a tensor state dict" % name)
    except CheckpointError:
        raise
    except (IndexError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError("malformed pickle stream: %s: %s" % (type(e).__name__, e)) from None
    raise CheckpointError("pickle stream ends without STOP")


def _check_header(stream):
    magic = _interpret(stream)
    if magic != MAGIC_NUMBER:
        raise CheckpointError("not a legacy torch checkpoint (magic number %r)" % (magic,))
    version = _interpret(stream)
    if version != PROTOCOL_VERSION:
        raise CheckpointError("unsupported torch serialization protocol %r" % (version,))
    sys_info = _interpret(stream)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise CheckpointError("checkpoint was not written on a little-endian machine: %r" % (sys_info,))


def _tensor_array(ref, storages):
    data = storages[ref.storage.key]
    if ref.storage.dtype != data.dtype:
        raise CheckpointError("storage %s is used with two dtypes" % ref.storage.key)
    # Bounds check before building a strided view onto the storage.
    if any(n < 0 for n in ref.shape) or any(s < 0 for s in ref.stride):
        raise CheckpointError("negative size or stride in tensor record")
    if math.prod(ref.shape) > data.size:
        # Also keeps a crafted stride-0 tensor from expanding into a huge copy.
        raise CheckpointError("tensor has more elements than storage %s" % ref.storage.key)
    if 0 not in ref.shape:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
        if last >= data.size:
            raise CheckpointError("tensor reaches past the end of storage %s" % ref.storage.key)
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset:], shape=ref.shape, strides=[s * data.itemsize for s in ref.stride], writeable=False)
    return np.array(view, dtype=data.dtype.newbyteorder("="), order="C", copy=True)


def read_state_dict(path, sha256=None):
    """``{name: numpy array}`` from the legacy-format torch checkpoint ``path``.

    Names are in file order.  ``torch.FloatStorage`` tensors come back as
    float32 arrays; other storage types keep their dtype (a BatchNorm's
    ``num_batches_tracked`` is int64).  With ``sha256``, the file's hash is
    checked before anything in it is parsed.  Raises :class:`CheckpointError`
    for a wrong hash, a zip-format file, or anything but a plain tensor
    state dict.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if sha256 is not None:
        actual = hashlib.sha256(blob).hexdigest()
        if actual != sha256.lower():
            raise CheckpointError("%s has sha256 %s, expected %s: refusing to read it" % (path, actual, sha256))
    if blob[:4] == b"PK\x03\x04":
        raise CheckpointError("%s is a zip-format torch checkpoint; only the legacy format is supported" % path)

    stream = io.BytesIO(blob)
    _check_header(stream)
    state = _interpret(stream)
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, _Tensor)
                                            for k, v in state.items())):
        raise CheckpointError("%s does not hold a dict of tensors" % path)
    keys = _interpret(stream)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CheckpointError("%s: malformed storage key list" % path)

    declared = {}
    for ref in state.values():
        declared.setdefault(ref.storage.key, ref.storage)
    view = memoryview(blob)
    pos = stream.tell()
    storages = {}
    for key in keys:
        if key not in declared:
            raise CheckpointError("%s: storage %s has data but no tensor uses it" % (path, key))
        if pos + 8 > len(blob):
            raise CheckpointError("%s is truncated (storage %s)" % (path, key))
        (numel,) = struct.unpack_from("<q", blob, pos)
        ref = declared[key]
        if numel != ref.numel:
            raise CheckpointError("%s: storage %s holds %d elements, the pickle says %d"
                                  % (path, key, numel, ref.numel))
        pos += 8
        end = pos + numel * ref.dtype.itemsize
        if end > len(blob):
            raise CheckpointError("%s is truncated (storage %s)" % (path, key))
        storages[key] = np.frombuffer(view[pos:end], dtype=ref.dtype)
        pos = end
    missing = set(declared) - set(storages)
    if missing:
        raise CheckpointError("%s: no data for storages %s" % (path, ", ".join(sorted(missing))))
    if pos != len(blob):
        raise CheckpointError("%s has %d unexpected trailing bytes" % (path, len(blob) - pos))
    return {name: _tensor_array(ref, storages) for name, ref in state.items()}
