"""A model on the host that reads its weights from the checkpoint when a block runs, so one far larger than
memory (the 8.4B Covo-Audio-Chat in float32) can still run, a few blocks at a time.

The model is built on the meta device (accelerate's `init_empty_weights`). Its repeated blocks (layers) get
forward hooks, as accelerate's offload hooks do: a block's parameters are read from the checkpoint's
safetensors (`safe_open`, memory-mapped, the file closed after each read) in the pass's dtype when it is
entered, and kept in a cache of `held_bytes` that drops the least recently used blocks. Embeddings and output
heads larger than `CHUNK_BYTES` are read in row chunks (an embedding only the rows its ids need). Everything
else (norms, small convolutions, buffers) is read once and stays. Code that reads a block's weights without
calling it (a decode engine) holds it through `held(block)`.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn

from voxport.errors import CheckpointError, InputError
from voxport.runtime.devices import process_memory_bytes

DEFAULT_HELD_BYTES = 2 * 2**30  # blocks kept at once when no memory bound is given
CHUNK_BYTES = 512 * 2**20  # an embedding or output head larger than this is read in row chunks of this size
GB = 1e9
FREED_AT_ONCE_BYTES = 2**20  # host allocations this large go back to the OS when freed (see `free_promptly`)
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_ATTRIBUTE = "_voxport_streamed"  # on every module whose weights stream: its StreamedWeights and unit name


@dataclass(frozen=True)
class Streaming:
    """How a model on the host holds its weights: blocks within `held_bytes`, or, with `max_memory_bytes`, half
    of what that process total leaves after what the process already holds and the weights kept whole (the
    other half is left to activations and recorded tensors)."""

    max_memory_bytes: int | None = None
    held_bytes: int = DEFAULT_HELD_BYTES

    def budget(self, resident_bytes: int, largest: tuple[str, int], dtype: torch.dtype) -> int:
        """Bytes of blocks to hold at once; an InputError when not even the largest block fits."""
        if self.max_memory_bytes is None:
            return max(self.held_bytes, largest[1])
        used = process_memory_bytes("VmRSS") or 0
        held = (self.max_memory_bytes - used - resident_bytes) // 2
        if held < largest[1]:
            need = used + resident_bytes + 2 * largest[1]
            raise InputError(
                f"--max-memory {self.max_memory_bytes / GB:g}: expected at least {need / GB:.3g} GB "
                f"(this process holds {used / GB:.3g} GB, the weights kept whole {resident_bytes / GB:.3g} GB, "
                f"and its largest block {largest[0]} {largest[1] / GB:.3g} GB in {str(dtype).split('.')[-1]}, "
                "twice over for its activations)"
            )
        return held


def free_promptly() -> bool:
    """Have the C library hand every freed host allocation of FREED_AT_ONCE_BYTES or more back to the OS at once.
    glibc raises its mmap threshold (up to 32 MB) after each large free, so the many block inputs, outputs and
    activations a streamed pass makes and frees stay in its heaps, fragmented: the streamed float32 reference of
    the 2-layer full-size Covo peaked at 9.3 GB with them kept, 7.1 GB without (about 10 % slower). False
    (nothing changed) where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, FREED_AT_ONCE_BYTES))


class CheckpointReader:
    """Where each tensor of a checkpoint lives; tensors and row ranges read on demand through `safe_open`."""

    def __init__(self, files: list[Path]):
        self.files: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            with _open(file) as shard:
                for key in shard.keys():
                    self.files[key] = file
                    self.shapes[key] = tuple(shard.get_slice(key).get_shape())

    def read(self, keys: dict[str, torch.dtype | None]) -> dict[str, torch.Tensor]:
        """The tensors of `keys` (each converted to its dtype; None: as stored), copied out of the mapping."""
        found: dict[str, torch.Tensor] = {}
        for file in {self.files[key] for key in keys}:
            with _open(file) as shard:
                for key, dtype in keys.items():
                    if self.files[key] == file:
                        found[key] = shard.get_tensor(key).to(dtype=dtype, copy=True)
        return found

    def rows(self, key: str, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        with _open(self.files[key]) as shard:
            return shard.get_slice(key)[start:stop].to(dtype=dtype, copy=True)

    def picked_rows(self, key: str, ids: list[int], dtype: torch.dtype) -> torch.Tensor:
        with _open(self.files[key]) as shard:
            table = shard.get_slice(key)
            return torch.cat([table[i : i + 1] for i in ids]).to(dtype=dtype)


@dataclass
class _Entry:
    tensors: dict[str, torch.Tensor]
    nbytes: int
    release: Callable[[], None]
    pins: int = 0
    memo: dict = field(default_factory=dict)  # tensors derived from the unit's (fused views...), dropped with it


class StreamedWeights:
    """The weights of one model built on the meta device, read from `reader` as its blocks run."""

    def __init__(
        self,
        model: nn.Module,
        reader: CheckpointReader,
        device: torch.device,
        dtype_of: Callable[[str], torch.dtype],
        units: list[str],
        streaming: Streaming,
        key_of: Callable[[str], str] = str,
        resident: tuple[str, ...] = (),
    ):
        """`units`: the blocks streamed whole (module names); `dtype_of(name)` a parameter's dtype; `key_of(name)`
        its checkpoint key; modules under `resident` stay whole even when large (code reads them directly)."""
        self.reader, self.device, self.key_of = reader, device, key_of
        free_promptly()
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        modules = dict(model.named_modules())
        aliases: dict[int, list[tuple[nn.Module, str, str]]] = {}  # tied parameters share one tensor
        for name, module in modules.items():
            for local, parameter in module.named_parameters(recurse=False):
                full = f"{name}.{local}" if name else local
                aliases.setdefault(id(parameter), []).append((module, local, full))
        self.slots: dict[str, list[tuple[nn.Module, str]]] = {}  # parameter name -> where it is set
        self.dtypes: dict[str, torch.dtype] = {}
        for places in aliases.values():
            owner = next((full for _, _, full in places if key_of(full) in reader.files), places[0][2])
            self.slots[owner] = [(module, local) for module, local, _ in places]
            self.dtypes[owner] = dtype_of(owner)
        known = {key_of(name) for name in model.state_dict()}
        missing = [f"missing {key_of(name)}" for name in self.slots if key_of(name) not in reader.files]
        unexpected = [f"unexpected {key}" for key in reader.files if key not in known]
        if missing or unexpected:
            named = (missing + unexpected)[:3]
            raise CheckpointError(
                f"weights in {next(iter(reader.files.values())).parent} do not match the model: {', '.join(named)}"
            )
        self._as_meta(list(self.slots))
        self.units = {unit: self._under(unit) for unit in units}
        in_units = {name for names in self.units.values() for name in names}
        chunked = [
            name
            for name, module in modules.items()
            if isinstance(module, (nn.Embedding, nn.Linear))
            and not name.startswith(tuple(prefix + "." for prefix in resident))
            and name not in resident
            and f"{name}.weight" in self.slots
            and f"{name}.weight" not in in_units
            and self._bytes([f"{name}.weight"]) > CHUNK_BYTES
        ]
        kept = [name for name in self.slots if name not in in_units and name.rsplit(".", 1)[0] not in chunked]
        resident_bytes = self._bytes(kept)
        largest = max(((unit, self._bytes(names)) for unit, names in self.units.items()), key=lambda u: u[1])
        self.held_bytes = streaming.budget(resident_bytes, largest, max(self.dtypes.values(), key=_width))
        self.chunk_bytes = min(CHUNK_BYTES, self.held_bytes)
        self._assign(self.reader.read({key_of(name): self.dtypes[name] for name in kept}), kept)
        self._load_buffers(model)
        for unit in units:
            module = modules[unit]
            setattr(module, _ATTRIBUTE, (self, unit))
            module.register_forward_pre_hook(self._entering(unit))
            module.register_forward_hook(self._leaving(unit), always_call=True)
        for name in chunked:
            module = modules[name]
            setattr(module, _ATTRIBUTE, (self, name))
            module.forward = (
                self._embedding(module, name) if isinstance(module, nn.Embedding) else self._linear(module, name)
            )

    # --- blocks ------------------------------------------------------------------------------------------------

    @contextmanager
    def holding(self, unit: str) -> Iterator[_Entry]:
        """Unit `unit`'s weights set in the model (read now unless cached) while the block runs."""
        entry = self.pin(unit)
        try:
            yield entry
        finally:
            self.unpin(unit)

    def _entering(self, unit: str) -> Callable:
        def hook(module, args) -> None:
            self.pin(unit)

        return hook

    def _leaving(self, unit: str) -> Callable:
        def hook(module, args, output) -> None:
            self.unpin(unit)

        return hook

    def pin(self, unit: str) -> _Entry:
        entry = self.entries.get(unit)
        if entry is None:
            names = self.units[unit]
            entry = self._admit(unit, self._bytes(names), lambda: self._read_unit(names), lambda: self._as_meta(names))
            self._assign(entry.tensors, names)
            entry.tensors = {}  # the module holds them now (and may swap them for views of fused copies)
        self.entries.move_to_end(unit)
        entry.pins += 1
        return entry

    def unpin(self, unit: str) -> None:
        entry = self.entries.get(unit)
        if entry is not None and entry.pins:
            entry.pins -= 1

    def _read_unit(self, names: list[str]) -> dict[str, torch.Tensor]:
        read = self.reader.read({self.key_of(name): self.dtypes[name] for name in names})
        return {name: read[self.key_of(name)] for name in names}

    def _admit(self, key: str, nbytes: int, load: Callable, release: Callable) -> _Entry:
        """A new cache entry for `key`, the least recently used unpinned entries dropped until it fits."""
        held = sum(entry.nbytes for entry in self.entries.values())
        for old in [name for name, entry in self.entries.items() if not entry.pins]:
            if held + nbytes <= self.held_bytes:
                break
            dropped = self.entries.pop(old)
            dropped.release()
            held -= dropped.nbytes
        entry = _Entry(load(), nbytes, release)
        self.entries[key] = entry
        return entry

    # --- chunked embeddings and heads --------------------------------------------------------------------------

    def _embedding(self, module: nn.Embedding, name: str) -> Callable:
        key, dtype = self.key_of(f"{name}.weight"), self.dtypes[f"{name}.weight"]

        def forward(ids: torch.Tensor) -> torch.Tensor:
            wanted = torch.unique(ids)
            rows = self.reader.picked_rows(key, wanted.tolist(), dtype).to(self.device)
            return F.embedding(torch.searchsorted(wanted, ids), rows)

        return forward

    def _linear(self, module: nn.Linear, name: str) -> Callable:
        weight, bias = f"{name}.weight", f"{name}.bias" if module.bias is not None else None
        out_features, in_features = module.weight.shape
        dtype = self.dtypes[weight]
        step = max(1, self.chunk_bytes // (in_features * dtype.itemsize))

        def chunk(start: int) -> dict[str, torch.Tensor]:
            stop = min(start + step, out_features)
            names = [weight] + ([bias] if bias else [])
            return {n: self.reader.rows(self.key_of(n), start, stop, self.dtypes[n]).to(self.device) for n in names}

        def forward(x: torch.Tensor) -> torch.Tensor:
            outputs = []
            for start in range(0, out_features, step):
                key = f"{name}[{start}]"
                entry = self.entries.get(key) or self._admit(
                    key, min(step, out_features - start) * in_features * dtype.itemsize, lambda: chunk(start), _nothing
                )
                self.entries.move_to_end(key)
                entry.pins += 1
                try:
                    outputs.append(F.linear(x, entry.tensors[weight], entry.tensors.get(bias) if bias else None))
                finally:
                    entry.pins -= 1
            return torch.cat(outputs, dim=-1)

        return forward

    # --- placing tensors ---------------------------------------------------------------------------------------

    def _under(self, unit: str) -> list[str]:
        return [name for name in self.slots if name.startswith(unit + ".")]

    def _bytes(self, names: list[str]) -> int:
        return sum(_numel(self.slots[name][0]) * self.dtypes[name].itemsize for name in names)

    def _assign(self, tensors: dict[str, torch.Tensor], names: list[str]) -> None:
        for name in names:
            tensor = tensors.get(name)
            if tensor is None:
                tensor = tensors[self.key_of(name)]
            parameter = nn.Parameter(tensor.to(self.device), requires_grad=False)
            for module, local in self.slots[name]:
                module._parameters[local] = parameter

    def _as_meta(self, names: list[str]) -> None:
        for name in names:
            module, local = self.slots[name][0]
            shape = module._parameters[local].shape  # type: ignore[union-attr]
            parameter = nn.Parameter(torch.empty(shape, dtype=self.dtypes[name], device="meta"), requires_grad=False)
            for module, local in self.slots[name]:
                module._parameters[local] = parameter

    def _load_buffers(self, model: nn.Module) -> None:
        """Buffers the checkpoint stores (codebooks, statistics) replace the computed ones, as stored."""
        stored = {
            name: self.key_of(name) for name, _ in model.named_buffers() if self.key_of(name) in self.reader.files
        }
        read = self.reader.read(dict.fromkeys(stored.values()))
        for name, key in stored.items():
            owner, _, local = name.rpartition(".")
            model.get_submodule(owner)._buffers[local] = read[key].to(self.device)


def streamed_unit(module: nn.Module) -> tuple[StreamedWeights, str] | None:
    """The streamed weights a block's parameters come from and its unit name; None for a module held whole."""
    return getattr(module, _ATTRIBUTE, None)


@contextmanager
def held(module: nn.Module) -> Iterator[dict]:
    """For code that reads a block's weights without calling it: the block's parameters set while inside (a
    no-op for a module held whole). Yields a memo for tensors derived from them, dropped with them."""
    found = streamed_unit(module)
    if found is None:
        yield {}
        return
    weights, unit = found
    with weights.holding(unit) as entry:
        yield entry.memo


def _numel(slot: tuple[nn.Module, str]) -> int:
    module, local = slot
    return module._parameters[local].numel()  # type: ignore[union-attr]


def _width(dtype: torch.dtype) -> int:
    return dtype.itemsize


def _nothing() -> None:
    return None


def _open(file: Path):
    try:
        return safe_open(file, framework="pt", device="cpu")
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"cannot read weights {file}: {error}") from None
