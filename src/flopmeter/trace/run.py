"""Run a model's forward once under the recorder, on fake tensors (default) or real ones.

The user's model is never run and never modified: the forward runs on a shadow of its module
tree (:func:`.fakes.shadow`) holding our own tensors — fakes in fake mode, clones in real mode
(so in-place writes and BatchNorm running statistics land on copies) — while the module stack
wraps the forwards of the shadow's modules only, and the RNG state is forked and restored.
Tensors the forward reaches outside the parameters and buffers (attributes, containers,
closures, globals) are written as fakes in fake mode and restored after the run in real mode
(:mod:`.state`).
A forward of the same model running in another thread meanwhile is unaffected.

Process-wide state, all of it (documented here once):

- ``_RUN_LOCK``: counts run one at a time (a cached fake mode records into one run at a time);
- ``fakes._CACHE``: the fake parameters of each model, weakly keyed on the model;
- ``recorder._KEYS``, ``events._SIGNATURES`` and ``state._WRITES``: op name, argument names and
  the arguments it writes, per op overload;
- ``memo.MEMO`` and ``memo.PARTS``: the fake mode's dispatch memo (an op's fake results per key of its
  arguments, as FakeTensor's own process-wide cache keeps them) and the numbers of tensor key parts;
  each entry also keeps the op's cost under flopmeter's own formulas (``Replay.costs``, per version of
  the registry);
- ``emit._FUNCTIONS``: replay's generated emitters, by source text (the last 512 compiled);
- ``fakes._SLOTS``: the slot descriptors of each module class;
- ``formulas.registry._RULES``: the generic rule (view, pointwise) read off each op's schema.

The cyclic garbage collector is paused during the whole recording (restored in ``finally``), and
``flopmeter.api.run`` pauses it for the whole count around it: a run makes many small objects, and
on a large model the collector would sweep the heap hundreds of times (a 70B Llama count: 19 s →
13 s); a collection started by the count's own allocations before the recording would also sweep
the model just built (2 s for a 6,000-layer Llama). Tensors that only a reference cycle keeps alive
are then freed after the run, not at whatever moment the collector would have run in eager mode;
Python's first pass over the objects the count keeps runs at the first allocation after it.

Each run costs with its own copy of the formula registry (``api.run``).
"""

from __future__ import annotations

import functools
import gc
import threading
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException, FakeTensor

from ..errors import FlopmeterError, InputError, ModelForwardError, OptionsError
from .events import TensorRef, tensors_in
from .fakes import fake_like, fake_substitutes, first_tensors, real_substitutes, restore_hooks, shadow
from .model import ModuleInfo, ParamInfo, Trace
from .checks import check_call, check_input_memory, check_not_nested, real_device
from .globals import globals_kept
from .kernels import CUDA_RESULTS, DeviceKernels, kernel_notes, observed, summary
from .modules import ModuleStack
from .packed import packed_weights
from .quiet import quiet_logs
from .recorder import Recorder, Recording
from .refs import Refs
from .replay import Replayer, enabled as replay_enabled
from .sdpa_rules import CudaTarget
from .state import FakeGuard, RealGuard
from .walk import ModelWalk

MODES = ("fake", "real")
_RUN_LOCK = threading.RLock()


def model_device(model: nn.Module) -> torch.device | None:
    for t in first_tensors(model):
        return t[1].device
    return None


def _unaliased(tensors: list[torch.Tensor]) -> bool:
    """Whether no real input is a view and no two distinct ones share a storage."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t.device.type == "meta" or isinstance(t, FakeTensor):
            continue
        if type(t) is not torch.Tensor or t.layout != torch.strided or t._is_view() or t.is_quantized:
            return False
        if seen.setdefault(t.untyped_storage().data_ptr(), id(t)) != id(t):
            return False
    return True


def _input_fake(mode, t: torch.Tensor, target: torch.device, quick: bool) -> torch.Tensor:
    """The fake of an example input. A meta tensor, and when no input is a view or shares a
    storage (``quick``) a plain dense tensor filling its storage (not an inference tensor, not
    needing grad, no conjugate or negative bit), is made from its metadata (:func:`.fakes.fake_like`:
    a fifth of the cost); anything else goes through ``from_tensor``, which keeps views, shared
    storages and those flags."""
    if t.device.type == "meta":
        return fake_like(mode, t, target)
    if (quick and type(t) is torch.Tensor and t.storage_offset() == 0 and not t.requires_grad and not t.is_inference()
            and not t.is_conj() and not t.is_neg()):
        fake = fake_like(mode, t, t.device)
        if fake.untyped_storage().nbytes() == t.untyped_storage().nbytes():
            return fake
    return mode.from_tensor(t)


def _first_float_dtype(model: nn.Module) -> torch.dtype:
    for _, p in first_tensors(model):
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _map_tensors(value: Any, fn) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    if isinstance(value, tuple):
        mapped = [_map_tensors(v, fn) for v in value]
        return type(value)(*mapped) if hasattr(value, "_fields") else tuple(mapped)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def normalise_input_shape(input_shape) -> list[tuple[int, ...]]:
    """(1, 3, 224, 224) → [(1, 3, 224, 224)]; [(1, 10), (1, 5)] → two inputs."""
    if input_shape is None:
        return []
    if not isinstance(input_shape, (tuple, list, torch.Size)):
        raise InputError(f"input_shape must be a tuple of non-negative ints or a list of them, got {input_shape!r}",
                         hint="for example input_shape=(1, 3, 224, 224)")
    shapes = list(input_shape)
    if shapes and all(isinstance(s, int) for s in shapes):
        shapes = [tuple(shapes)]
    out = []
    for s in shapes:
        if not isinstance(s, (tuple, list, torch.Size)) or not all(isinstance(d, int) and d >= 0 for d in s):
            raise InputError(f"input_shape must be a tuple of non-negative ints or a list of them, got {input_shape!r}",
                             hint="for example input_shape=(1, 3, 224, 224)")
        out.append(tuple(s))
    return out


def gc_paused(fn):
    """``fn`` with the cyclic garbage collector paused (see the module docstring)."""
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        collecting = gc.isenabled()
        gc.disable()        # a run makes many small objects; the cyclic collector would sweep the heap over and over
        try:
            return fn(*args, **kwargs)
        finally:
            if collecting:
                gc.enable()
    return paused


@gc_paused
def record(model: nn.Module, args: tuple, kwargs: dict | None, *, input_shape=None,
           mode: str = "fake", device: str | torch.device | None = None, inference: bool = True,
           module_inputs: bool = False, module_config=None, training=None,
           autocast: torch.dtype | None = None, replay: bool | None = None, walk: ModelWalk | None = None,
           kernels: CudaTarget | None = None, route: str | None = None) -> Trace:
    """Run ``model(*args, **kwargs)`` once under the recorder and return its Trace (with every
    module call's input metadata when ``module_inputs`` is set, and each module's
    ``module_config(module) -> (layer, config)`` when given — explain's closed forms).
    ``training``: a :class:`.training.TrainSpec` records a whole training step instead (forward
    in train mode on the shadow, loss, backward, optimizer step; see :mod:`.training`).
    ``autocast``: run the forward (and loss) under ``torch.autocast(device, autocast)``; the
    weight copies it makes are in the trace (``_to_copy`` of parameters).
    ``replay``: replay repeated module calls (:mod:`.replay`; fake-mode inference only);
    default: on unless ``FLOPMETER_REPLAY=0``. ``walk``: the model's :class:`.walk.ModelWalk`, when
    the caller has one. ``kernels``: for a fake run on cuda, the CUDA device whose kernel choices
    the run takes (:mod:`.kernels`); a training step without a GPU then runs on CPU fake tensors
    with those choices and reports the device as cuda (``route="cpu"`` forces that route,
    ``"cuda"`` the fake CUDA tensors; default: CPU fakes only where autograd needs a GPU)."""
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}",
                         hint="pass the module itself, e.g. torchvision.models.resnet18()")
    if mode not in MODES:
        raise OptionsError(f"unknown mode '{mode}'", hint=f"choose one of: {', '.join(MODES)}")
    check_call(args, kwargs, input_shape)
    check_not_nested(args, kwargs)
    kwargs = dict(kwargs or {})
    shapes = normalise_input_shape(input_shape)
    if shapes and args:
        raise InputError("give example inputs or input_shape, not both",
                         hint="drop input_shape when you pass tensors (or drop the tensors)")
    if not args and not kwargs and not shapes:
        raise InputError("no example inputs", hint="pass tensors after the model, or input_shape=(1, 3, 224, 224)")

    if walk is None or walk.model is not model:
        walk = ModelWalk(model)
    found = model_device(model)
    if mode == "real":
        target = real_device(found, device)      # never report a device the run did not use
    elif device is not None:
        target = torch.device(device)
    elif found is not None and found.type != "meta":
        target = found
    else:
        target = torch.device("cpu")
    in_dtype = _first_float_dtype(model)
    script = isinstance(model, torch.jit.ScriptModule)
    if route not in (None, "cpu", "cuda"):
        raise OptionsError(f"unknown kernel route '{route}'", hint="use 'cpu', 'cuda' or None")
    if mode != "fake" or target.type != "cuda":
        kernels = None                           # real runs take the real kernels; other devices have no rules here
    as_cuda = kernels is not None and (route == "cpu" or (route is None and training is not None
                                                          and not torch.cuda.is_available()))
    run_target = torch.device("cpu") if as_cuda else target       # where the fake tensors live

    if training is not None and run_target.type != "cpu" and not getattr(torch, run_target.type).is_available():
        raise OptionsError(f"a training step on a {target.type} device needs that device here: PyTorch's autograd "
                           "engine starts a thread per device, also for fake tensors",
                           hint="count the training step on cpu (the counts do not depend on the device; only "
                                "the optimizer's foreach default does)")
    if training is not None and script:
        raise InputError("a training step cannot be counted on a TorchScript module", hint="count the eager model")
    # TorchScript modules cannot swap tensors: a scripted model runs as is, and a scripted
    # submodule's copy in the shadow shares its C++ module, tensors and flags with the user's. So
    # their buffers are kept and put back, and a training step (whose backward would write the
    # user's gradients) is refused
    scripted = [(path, m) for path, m in walk.modules() if isinstance(m, torch.jit.ScriptModule)]
    if training is not None and scripted:
        raise InputError(f"a training step cannot be counted through the TorchScript submodule '{scripted[0][0]}': "
                         "its parameters are the model's own, not stand-ins", hint="script the model after counting, "
                         "or count the forward only")
    refs = Refs()
    if as_cuda:
        # the trace's tensors are the CUDA tensors they stand for (a fake CUDA tensor is on cuda:0)
        refs.label(run_target, str(target) if target.index is not None else f"{target.type}:0")
    fake_mode = None
    train_info = None
    with _RUN_LOCK, torch.random.fork_rng(devices=[]), quiet_logs():
        if mode == "fake" and script:
            raise InputError("a TorchScript module runs only in real mode",
                             hint="use mode='real' (CLI: --mode real), or count the eager model")
        if mode == "fake":
            fake_mode, tensors = fake_substitutes(walk, run_target, label=str(target))

            made: dict[int, torch.Tensor] = {}         # an input given twice is one tensor
            given: list[torch.Tensor] = []
            _map_tensors((args, kwargs), given.append)
            quick = _unaliased(given)

            def fake_input(t: torch.Tensor) -> torch.Tensor:
                if isinstance(t, FakeTensor):
                    return t
                done = made.get(id(t))
                if done is None:
                    done = made[id(t)] = _input_fake(fake_mode, t, run_target, quick)
                return done

            args = _map_tensors(args, fake_input)
            kwargs = _map_tensors(kwargs, fake_input)
            if shapes:
                with fake_mode:
                    args = tuple(torch.empty(s, dtype=in_dtype, device=run_target) for s in shapes)
        else:
            for _, name, t in walk.tensors():
                if t.device.type == "meta":
                    raise InputError(f"real mode needs real weights, but '{name}' is on the meta device",
                                     hint="use mode='fake' (the default) for models without weights")
            tensors = {} if script else real_substitutes(walk)
            if shapes:
                check_input_memory(shapes, in_dtype, target)
                args = tuple(torch.randn(s, dtype=in_dtype, device=target) for s in shapes)

        table = _param_table(walk, tensors, refs)
        as_input = lambda t: refs.ref(t, role="input", created=-1)      # noqa: E731
        inputs = tensors_in(_map_tensors(args, as_input)) + tensors_in(_map_tensors(kwargs, as_input))
        run_walk = walk if script else shadow(walk, tensors)
        runnable = run_walk.model
        if training is not None:
            try:
                runnable.train()              # the shadow's flags only; the user's modules keep theirs
            except NotImplementedError as exc:          # an exported program's module
                raise InputError(f"this model cannot be put in train mode for a training step: {exc}",
                                 hint="count a training step on the eager model") from None
        stack = ModuleStack(run_walk.modules(), keep_inputs=module_inputs, meta=refs.meta)
        recording = Recording(stack, refs)
        if fake_mode is not None:
            recording.guard = FakeGuard(fake_mode)
            if as_cuda:
                recording.results = CUDA_RESULTS
        else:                 # the stand-ins, and inputs made here, are flopmeter's own to write
            own = {r.storage for r in map(refs.id_of, [*tensors.values(), *(args if shapes else ())]) if r is not None}
            recording.guard = RealGuard(refs, recording.events, own)
        grad = torch.no_grad() if inference and training is None else torch.enable_grad()
        recorder = fake_mode if fake_mode is not None else Recorder(recording)
        replayer = None
        if (replay_enabled() if replay is None else replay) and fake_mode is not None and inference and training is None:
            replayer = Replayer(recording, refs, stack, fake_mode)
            replayer.install(run_walk.modules())
        kept = _buffers_kept(m for _, m in scripted)
        device_kernels = DeviceKernels(kernels, recording.events, cuda_dropout=as_cuda) if kernels else None
        if device_kernels is not None:
            stack.around = device_kernels.around(run_walk.modules())
        try:
            with (globals_kept(), grad, (nullcontext() if script else stack.installed()),
                  recorder.recording_to(recording), device_kernels or nullcontext()):
                if training is not None:
                    from .training import train_step
                    owners = {id(p): (p, names[0].rpartition(".")[0]) for kind, _, p, names in table
                              if kind == "param" and p is not None}
                    train_info = train_step(runnable, args, kwargs, recorder, recording, stack, refs, training,
                                            target, owners, amp=_amp(run_target, autocast),
                                            shards=_shards(table, training.shards))
                elif script:
                    _run_script_module(model, recorder, stack, args, kwargs)
                else:
                    with recorder, _amp(run_target, autocast):
                        result = runnable(*args, **kwargs)
                    refs.meta(result)           # outputs never seen by an op still get their storages
        except FlopmeterError:
            raise
        except (Exception, SystemExit) as exc:     # the model's own code exiting is a failed forward too
            raise _forward_error(exc, model, recording, stack, inputs) from exc
        finally:
            if replayer is not None:
                replayer.uninstall()
            restore_hooks(run_walk.hooks_kept)
            _put_back(kept)
            recording.guard.put_back()
        params = _resolve_params(table, refs)
        storages = refs.close()

    options = {"mode": mode, "device": str(target), "inference": inference and training is None}
    if autocast is not None:
        options["autocast"] = str(autocast).removeprefix("torch.")
    extra = {}
    if replayer is not None:
        extra["replay"] = replayer.stats()
    notes = kernel_notes(device_kernels, as_cuda, autocast)
    decisions = device_kernels.decisions if device_kernels is not None else observed(recording.events)
    extra["kernels"] = summary(decisions, replayer.spans if replayer and device_kernels else (), recording.events,
                               target=kernels, device=str(target), notes=notes,
                               route="fake cuda tensors" if kernels is not None and not as_cuda else
                               "cpu fake tensors standing in for cuda ones" if as_cuda else f"{mode} run on {target}")
    if training is not None:
        options.update(training=True, loss=training.loss_name, optimizer=training.optimizer,
                       master_weights=training.master_weights)
        extra["training"] = _training_memory(train_info, params, storages)
        extra["training"]["autocast_copy_bytes"] = autocast_copy_bytes(recording.events, storages)
    return Trace(events=recording.events, modules=_module_table(walk, stack, module_config), params=params,
                 inputs=inputs, options=options, storages=storages, model=type(model).__name__,
                 torch_version=torch.__version__, extra=extra, replayed=replayer.spans if replayer else [])


def _amp(device: torch.device, dtype: torch.dtype | None):
    import contextlib
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def autocast_copy_bytes(events, storages) -> int:
    """Bytes of the parameter copies autocast makes (``_to_copy`` of a parameter; each cached
    once per forward)."""
    made = {}
    for ev in events:
        if ev.op == "aten._to_copy" and ev.phase == "forward":
            src = ev.arg("self")
            if getattr(src, "role", None) == "param":
                for t in ev.outputs:
                    made[t.storage] = storages[t.storage].nbytes if t.storage in storages else t.nbytes
    return sum(made.values())


def _training_memory(info: dict, params: list[ParamInfo], storages) -> dict:
    """Saved-for-backward bytes per module (unique storages, parameters and buffers excluded),
    gradient and optimizer-state bytes."""
    own = {p.storage for p in params}
    saved: dict[str, int] = {}
    for sid, module in info["saved"].items():
        if sid not in own:
            saved[module] = saved.get(module, 0) + storages[sid].nbytes
    out = {"saved_bytes": sum(saved.values()), "saved_by_module": saved, "grad_bytes": info["grad_bytes"],
           "optimizer_state_bytes": info["optimizer_state_bytes"],
           "optimizer_state_dtypes": info.get("optimizer_state_dtypes", {})}
    for key in ("grad_storages", "state_storages", "master_weights", "master_storages", "master_bytes",
                "master_grad_bytes"):
        if key in info:
            out[key] = info[key]
    return out


def _param_table(walk: ModelWalk, tensors: dict[int, torch.Tensor], refs: Refs) -> list[tuple]:
    """Unique parameters then buffers (first name canonical, later names as aliases) with their
    stand-ins, referenced first (ids and storages from before the run). Cached fake stand-ins
    keep their references for the next run of the same model (``tensors.refs``)."""
    table: dict[int, list] = {}
    for kind, name, t in walk.tensors():
        entry = table.get(id(t))
        if entry is not None:
            entry[3].append(name)
            continue
        table[id(t)] = [kind, t, tensors.get(id(t)), [name]]
    stand_ins = [(sub, kind) for kind, _, sub, _ in table.values() if sub is not None]
    cache = refs.preloaded(stand_ins, getattr(tensors, "refs", None))
    if hasattr(tensors, "refs"):
        tensors.refs = cache
    # quantized modules keep weights in packed objects, not parameters: frozen, at their real size
    return list(table.values()) + [["param", t, None, [name]] for name, t in packed_weights(walk.modules())]


def _shards(table: list[tuple], shards: tuple) -> dict[int, tuple]:
    """id(stand-in parameter) → (shape, dtype) of the part the optimizer steps, for the
    parameters ``TrainSpec.shards`` names under any of their names."""
    if not shards:
        return {}
    by_name = {name: (tuple(shape), dtype) for name, shape, dtype in shards}
    out = {}
    for kind, _, sub, names in table:
        if kind == "param" and sub is not None:
            part = next((by_name[n] for n in names if n in by_name), None)
            if part is not None:
                out[id(sub)] = part
    return out


def _resolve_params(table: list[tuple], refs: Refs) -> list[ParamInfo]:
    """The parameter table with the ids the run gave each stand-in (a tensor the forward never
    touched gets its ids here)."""
    out = []
    for kind, t, sub, names in table:
        ref = None if sub is None else (refs.id_of(sub) or refs.ref(sub, kind, -1))
        out.append(ParamInfo(names[0], kind, tuple(t.shape), t.dtype, bool(t.requires_grad), tensor=ref.id if ref else -1,
                             storage=ref.storage if ref else -1, aliases=tuple(names[1:])))
    return out


def _module_table(walk: ModelWalk, stack: ModuleStack, module_config) -> list[ModuleInfo]:
    out = []
    for path, module in walk.modules():
        info = ModuleInfo(path, type(module).__name__, stack.calls.get(path, 0),
                          list(stack.outputs.get(path, [])), list(stack.inputs.get(path, [])))
        if module_config is not None:
            info.layer, info.config = module_config(module)
        out.append(info)
    return out


def _run_script_module(model, recorder: Recorder, stack: ModuleStack, args, kwargs) -> None:
    """A TorchScript model runs no Python in its submodules: run it as is, every op at the root
    (its buffers are put back by :func:`record`, as every scripted module's are)."""
    with recorder:
        stack.call("", model, args, kwargs)


def _buffers_kept(modules) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, a copy of it) for every buffer of ``modules``, once each."""
    seen: set[int] = set()
    out = []
    for m in modules:
        for b in m.buffers():
            if id(b) not in seen:
                seen.add(id(b))
                out.append((b, b.clone()))
    return out


def _put_back(kept: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for b, value in kept:
            b.copy_(value)


def _forward_error(exc: Exception, model: nn.Module, recording: Recording, stack: ModuleStack,
                   inputs: list[TensorRef]) -> ModelForwardError:
    failure = recording.failure
    if failure is not None:
        module = failure.module
        shapes = list(tensors_in(failure.args))
        where = f" in {failure.op} with inputs {', '.join(map(repr, shapes))}"
        op = failure.op
    else:
        module = stack.error_stack[-1][0] if stack.error_stack else ""
        shapes, where, op = None, "", None
    mods = dict(model.named_modules())
    kind = type(mods[module]).__name__ if module in mods else "?"
    label = f"'{module}' ({kind})" if module else f"the root module ({kind})"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (DataDependentOutputException, DynamicOutputShapeException)):
        return ModelForwardError(
            f"the forward of {label}{where} depends on tensor values, which fake tensors do not have",
            module=module, op=op, shapes=shapes, data_dependent=True,
            hint="count it in real mode on real (or random) weights: Options(mode='real'), CLI --mode real")
    step = "the model's forward" if recording.phase == "forward" else f"the training step's {recording.phase}"
    return ModelForwardError(
        f"{step} failed in {label}{where}: {type(exc).__name__}: {first}",
        module=module, op=op, shapes=shapes,
        hint=f"check the model's inputs ({', '.join(map(repr, inputs)) or 'no tensors'}) against what this module expects",
    )
