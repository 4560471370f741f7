"""Mirror averaging and ensembles of exported ONNX models, for when no Keras run is behind them.

The bundled model is an int8 ONNX file whose GPU-trained Keras networks were not kept, so
what `ferkit.models.mirror` and `ferkit.models.ensemble` do to Keras models is done here to the
graph itself: the file stays one model that ONNX Runtime runs in one session, with ferkit's
metadata, and the quantized members are reused as they are rather than re-calibrated.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ferkit.data.preprocess import input_in_words
from ferkit.errors import FerkitError
from ferkit.runs import ONNX_META, SPLIT_PROTOCOL, member_summary

if TYPE_CHECKING:  # onnx is imported only where a graph is edited (`_onnx`)
    from onnx import ModelProto, ValueInfoProto

FACE, PROBABILITIES = "face", "probabilities"
INT64_MIN = np.iinfo(np.int64).min  # Slice's "to the start" when stepping backwards


def _onnx():
    """onnx, imported when needed: inference needs only onnxruntime, not onnx."""
    try:
        import onnx
    except ImportError:
        raise FerkitError("editing ONNX models needs onnx: pip install 'ferkit[train]'") from None
    return onnx


def load(path: str | Path) -> ModelProto:
    return _onnx().load(str(path))


def save(model: ModelProto, path: str | Path) -> Path:
    _onnx().save(model, str(path))
    return Path(path)


def _metadata(model) -> dict[str, str]:
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_META["classes"] not in meta:
        raise FerkitError(f"{model.graph.name or 'the model'} has no ferkit metadata: export it with `ferkit export`")
    return meta


def read_config(model) -> dict:
    """The training configuration stored in `model`'s metadata by `ferkit export`."""
    return json.loads(_metadata(model).get(ONNX_META["config"], "{}"))


def _interface(model) -> tuple[list[str], int]:
    """The class names and input size the backend will read: what members must share."""
    meta = _metadata(model)
    return json.loads(meta[ONNX_META["classes"]]), int(meta[ONNX_META["image_size"]])


def with_config(model: ModelProto, config: dict) -> ModelProto:
    """`model` with `config` as its metadata's configuration, added where it had none. What its run
    recorded (test scores) goes: they were another model's than this changed one."""
    for stale in [p for p in model.metadata_props if p.key == ONNX_META["recorded"]]:
        model.metadata_props.remove(stale)
    # the words of its input and output said again: a mirror-averaged copy or an ensemble kept its
    # first member's, which could say that no mirror image was averaged inside
    classes, size = _interface(model)
    return with_metadata(model, {"config": json.dumps(config),
                                 **interface_in_words(size, tuple(classes), bool(config.get("mirror_average")))})


def interface_in_words(size: int, classes: tuple[str, ...], mirrored: bool) -> dict[str, str]:
    """The file's input and output described in its metadata (ferkit.input, ferkit.output), and so
    in Netron: enough to use it with ONNX Runtime alone (docs/bundled-model.md has an example)."""
    inside = "; each face is averaged with its mirror image inside the model" if mirrored else ""
    return {"input": f"'{FACE}': {input_in_words(size)}",
            "output": f"'{PROBABILITIES}': float32, shape (batch, {len(classes)}), each row summing to 1, in the "
                      f"order of ferkit.classes ({', '.join(classes)}){inside}"}


def with_metadata(model: ModelProto, values: dict[str, str]) -> ModelProto:
    """`model` with each of `values` (keys of ONNX_META) as its metadata says it, replaced or added."""
    for key, value in values.items():
        entry = next((p for p in model.metadata_props if p.key == ONNX_META[key]), None)
        if entry is None:
            entry = model.metadata_props.add()
            entry.key = ONNX_META[key]
        entry.value = value
    return model


def output_named(model: ModelProto, name: str = PROBABILITIES) -> ModelProto:
    """`model` with its one output called `name`, as the bundled model's is: tf2onnx names it after a
    TensorFlow tensor ("Identity:0"), and an app written against one file failed on the other."""
    graph = model.graph
    old = graph.output[0].name
    if old != name:
        graph.node.append(_onnx().helper.make_node("Identity", [old], [name]))
        graph.output[0].CopyFrom(_renamed(graph.output[0], name))
    return model


def _constant(graph, name: str, values, dtype) -> str:
    graph.initializer.append(_onnx().numpy_helper.from_array(np.asarray(values, dtype), name))
    return name


def _check_plain(model) -> None:
    """Graphs whose first input is the face and that call no local functions (Keras' exports):
    anything else would be rewired wrongly rather than refused."""
    initializers = {init.name for init in model.graph.initializer}
    if model.functions or model.graph.sparse_initializer or model.graph.input[0].name in initializers:
        raise FerkitError("only plain exported graphs (face as the first input, no local functions) can be edited")


def mirror_averaged(model: ModelProto) -> ModelProto:
    """A copy of `model` that averages each face's probabilities with its mirror image's.

    As `ferkit.models.mirror` does for Keras: one pass over the batch and its mirror image
    concatenated (2N faces), the two halves averaged. A model that already does so is returned as is.
    """
    config = read_config(model)
    if config.get("mirror_average"):
        return model
    _check_plain(model)
    out = copy.deepcopy(model)
    graph = out.graph
    face, scores = graph.input[0].name, graph.output[0].name
    inner_in, inner_out = f"mirror/{face}", f"mirror/{scores}"
    rename = {face: inner_in, scores: inner_out}
    for node in graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
        node.output[:] = [rename.get(name, name) for name in node.output]
    nodes = _flip_head(graph, face, inner_in) + list(graph.node) + \
        _mean_tail(graph, inner_out, scores, len(_interface(model)[0]))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # shapes inside changed (2N): let ONNX Runtime infer them again
    out = float_scores(out)
    _onnx().checker.check_model(out)
    description = config.get("description") or config.get("recipe", "")
    return with_config(out, {**config, "mirror_average": True,
                              "description": f"{description}; each face averaged with its mirror image"})


def _flip_head(graph, face: str, both: str) -> list:
    """faces (N, H, W, C) -> `both`, [faces; faces flipped along W] (2N, H, W, C)."""
    helper = _onnx().helper
    bounds = [_constant(graph, f"mirror/{name}", [value], np.int64)
              for name, value in (("start", -1), ("end", INT64_MIN), ("axis", 2), ("step", -1))]
    return [helper.make_node("Slice", [face, *bounds], ["mirror/flipped"]),
            helper.make_node("Concat", [face, "mirror/flipped"], [both], axis=0)]


def _mean_tail(graph, both: str, scores: str, num_classes: int) -> list:
    """(2N, K) -> (2, N, K) -> `scores`, the two halves' mean (N, K); Gather is alike in every opset."""
    helper = _onnx().helper
    halves = _constant(graph, "mirror/shape", [2, -1, num_classes], np.int64)
    first, second = (_constant(graph, f"mirror/{name}", i, np.int64) for name, i in (("first", 0), ("second", 1)))
    return [helper.make_node("Reshape", [both, halves], ["mirror/halves"]),
            helper.make_node("Gather", ["mirror/halves", first], ["mirror/a"], axis=0),
            helper.make_node("Gather", ["mirror/halves", second], ["mirror/b"], axis=0),
            helper.make_node("Add", ["mirror/a", "mirror/b"], ["mirror/sum"]),
            helper.make_node("Mul", ["mirror/sum", _constant(graph, "mirror/half", 0.5, np.float32)], [scores])]


def averaged(models: list[ModelProto], weights: list[float] | None = None) -> ModelProto:
    """One model whose probabilities are the `weights`-weighted mean of `models`' (default: equal).

    Weights are fixed by the caller, not fitted: the members' own validation splits may be gone
    (the bundled model's are), and fitting weights on the test faces would only flatter them.
    """
    weights = _shares(len(models), weights)
    for i, model in enumerate(models):
        _check_plain(model)
        if _interface(model) != _interface(models[0]):
            raise FerkitError(f"model {i + 1} has other classes or input size than model 1: cannot average")
    opset = max(_default_opset(m) for m in models)
    out = copy.deepcopy(models[0])
    graph = out.graph
    for container in (graph.node, graph.initializer, graph.value_info, graph.input, graph.output):
        del container[:]
    graph.input.append(_renamed(models[0].graph.input[0], FACE))
    graph.output.append(_renamed(models[0].graph.output[0], PROBABILITIES))
    parts = [_add_member(graph, _at_opset(model, opset), f"m{i}/", weight)
             for i, (model, weight) in enumerate(zip(models, weights))]
    graph.node.append(_onnx().helper.make_node("Sum", parts, [PROBABILITIES]))
    _merge_opsets(out, models, opset)
    out.ir_version = max(m.ir_version for m in models)
    out = float_scores(out)
    _onnx().checker.check_model(out)
    return with_config(out, _ensemble_config([read_config(m) for m in models], weights))


def float_scores(model: ModelProto) -> ModelProto:
    """`model` without the int8 quantize-dequantize pairs on its logits, its Softmax outputs and
    the means after them: in float, as `ferkit export --quantize int8` now leaves them. Those of
    older exports (the bundled model's) came in 8-bit steps, rows summing to 0.987-1.006."""
    graph = model.graph
    by_output = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    tainted = {_before_pair(by_output, node.input[0]) for node in graph.node if node.op_type == "Softmax"}
    stands_for, kept, dropped = {}, [], set()
    for node in graph.node:  # in topological order, as ONNX keeps them
        node.input[:] = [stands_for.get(name, name) for name in node.input]
        if _in_pair(node, readers) and node.input[0] in tainted:
            stands_for[node.output[0]] = node.input[0]  # the float tensor it had rounded
            dropped.update(node.input[1:])  # its scale and zero point
            continue
        if node.op_type == "Softmax" or tainted.intersection(node.input):
            tainted.update(node.output)
        kept.append(node)
    kept += [_onnx().helper.make_node("Identity", [stands_for[out.name]], [out.name])
             for out in graph.output if out.name in stands_for]  # a single network: its output was a pair's
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    for init in [init for init in graph.initializer if init.name in dropped and init.name not in used]:
        graph.initializer.remove(init)
    return model


def _in_pair(node, readers: dict) -> bool:
    """A DequantizeLinear, or a QuantizeLinear read only by DequantizeLinear nodes (QDQ format, not
    a quantized operator's input)."""
    return node.op_type == "DequantizeLinear" or node.op_type == "QuantizeLinear" and all(
        reader.op_type == "DequantizeLinear" for reader in readers.get(node.output[0], []))


def _before_pair(by_output: dict, tensor: str) -> str:
    """The float tensor a QuantizeLinear-DequantizeLinear pair had rounded into `tensor`, or `tensor`."""
    dq = by_output.get(tensor)
    q = by_output.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else tensor


def _shares(count: int, weights: list[float] | None) -> list[float]:
    """Each member's share of the mean, summing to 1."""
    if count < 2:
        raise FerkitError("an ensemble needs at least two models")
    weights = list(weights) if weights is not None else [1.0] * count
    if len(weights) != count or not all(math.isfinite(w) and w > 0 for w in weights):  # NaN passes `<= 0`
        raise FerkitError(f"give one positive weight per model ({count}), got {weights}")
    return [w / sum(weights) for w in weights]


def _ensemble_config(configs: list[dict], weights: list[float]) -> dict:
    """The first member's data protocol (evaluation rebuilds its splits) and each member's share."""
    members = [{**member_summary(c, ("recipe", "model", "epochs", "description", "mirror_average")),
                "weight": round(w, 6)} for c, w in zip(configs, weights)]
    # Each member's description in brackets: its last words ("Changed for this run: epochs = 96") had
    # read as the whole ensemble's
    description = " + ".join(f"{m['weight']:.3g} x [{m['description'] or m['recipe']}]" for m in members)
    # Only what the first member says: a bare export says no split, and "classes": null was damage
    return {**{k: configs[0][k] for k in SPLIT_PROTOCOL if k in configs[0]}, "recipe": "ensemble", "model": "ensemble",
            "quantize": _quantized(configs),
            # Members that all average each face with its mirror image make one that does.
            "mirror_average": all(c.get("mirror_average") for c in configs),
            "description": f"weighted mean of {len(configs)} models' probabilities: {description}",
            "members": members}


def _quantized(configs: list[dict]) -> str | None:
    """The members' quantization, said of all of them: the first's alone had called a float
    member int8, or an int8 one float."""
    kinds = {c.get("quantize") for c in configs}
    return kinds.pop() if len(kinds) == 1 else "int8 in part" if kinds & {"int8", "int8 in part"} else None


def _add_member(graph, model, prefix: str, weight: float) -> str:
    """`model`'s nodes, names prefixed, reading `graph`'s input; returns its weighted output's name."""
    member = _onnx().compose.add_prefix(model, prefix)
    inner_in, inner_out = member.graph.input[0].name, member.graph.output[0].name
    for node in member.graph.node:
        node.input[:] = [FACE if name == inner_in else name for name in node.input]
    graph.node.extend(member.graph.node)
    graph.initializer.extend(member.graph.initializer)
    weighted = f"ensemble/{prefix}weighted"  # outside the member's names, which all start with `prefix`
    graph.node.append(_onnx().helper.make_node(
        "Mul", [inner_out, _constant(graph, f"ensemble/{prefix}weight", weight, np.float32)], [weighted]))
    return weighted


def _merge_opsets(out, models: list, opset: int) -> None:
    """Every domain any member uses, at its highest version; the default domain at `opset`."""
    versions: dict[str, int] = {}
    for model in models:
        for entry in model.opset_import:
            versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    versions[""] = opset
    versions.pop("ai.onnx", None)
    del out.opset_import[:]
    out.opset_import.extend(_onnx().helper.make_opsetid(domain, version) for domain, version in versions.items())


def _default_opset(model: ModelProto) -> int:
    return next(e.version for e in model.opset_import if e.domain in ("", "ai.onnx"))


def _at_opset(model: ModelProto, opset: int) -> ModelProto:
    """`model` converted to the ensemble's opset: one graph has one version of each operator."""
    if _default_opset(model) == opset:
        return model
    return _onnx().version_converter.convert_version(model, opset)


def _renamed(value_info: ValueInfoProto, name: str) -> ValueInfoProto:
    renamed = copy.deepcopy(value_info)
    renamed.name = name
    return renamed
