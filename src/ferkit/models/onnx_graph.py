"""Mirror averaging and ensembles of exported ONNX models, for when no Keras run is behind them.

The bundled model is an int8 ONNX file whose three GPU-trained Keras networks were not kept, so
what `ferkit.models.mirror` and `ferkit.models.ensemble` do to Keras models is done here to the
graph itself: the file stays one model that ONNX Runtime runs in one session, with ferkit's
metadata, and the quantized members are reused as they are rather than re-calibrated.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from ferkit.errors import FerkitError
from ferkit.runs import ONNX_META, SPLIT_PROTOCOL

FACE, PROBABILITIES = "face", "probabilities"


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FerkitError("editing ONNX models needs onnx: pip install 'ferkit[train]'") from None
    return onnx


def read_config(model) -> dict:
    """The training configuration stored in `model`'s metadata by `ferkit export`."""
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_META["classes"] not in meta:
        raise FerkitError(f"{model.graph.name or 'the model'} has no ferkit metadata: export it with `ferkit export`")
    return json.loads(meta.get(ONNX_META["config"], "{}"))


def _with_config(model, config: dict):
    for prop in model.metadata_props:
        if prop.key == ONNX_META["config"]:
            prop.value = json.dumps(config)
    return model


def _constant(graph, name: str, values, dtype) -> str:
    graph.initializer.append(_onnx().numpy_helper.from_array(np.asarray(values, dtype), name))
    return name


def mirror_averaged(model):
    """A copy of `model` that averages each face's probabilities with its mirror image's.

    As `ferkit.models.mirror` does for Keras: one pass over the batch and its mirror image
    concatenated (2N faces), the two halves averaged. A model that already does so is returned as is.
    """
    onnx, helper = _onnx(), _onnx().helper
    config = read_config(model)
    if config.get("mirror_average"):
        return model
    out = copy.deepcopy(model)
    graph = out.graph
    face, scores = graph.input[0].name, graph.output[0].name
    inner_in, inner_out = f"mirror/{face}", f"mirror/{scores}"
    for node in graph.node:
        node.input[:] = [inner_in if name == face else name for name in node.input]
        node.output[:] = [inner_out if name == scores else name for name in node.output]
    num_classes = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    big = np.iinfo(np.int64).min
    head = [  # faces (N, H, W, C) -> [faces; faces flipped along W] (2N, H, W, C)
        helper.make_node("Slice", [face, _constant(graph, "mirror/start", [-1], np.int64),
                                   _constant(graph, "mirror/end", [big], np.int64),
                                   _constant(graph, "mirror/axis", [2], np.int64),
                                   _constant(graph, "mirror/step", [-1], np.int64)], ["mirror/flipped"]),
        helper.make_node("Concat", [face, "mirror/flipped"], [inner_in], axis=0),
    ]
    tail = [  # (2N, K) -> (2, N, K) -> the two halves' mean (N, K); Gather is the same in every opset
        helper.make_node("Reshape", [inner_out, _constant(graph, "mirror/shape", [2, -1, num_classes], np.int64)],
                         ["mirror/halves"]),
        helper.make_node("Gather", ["mirror/halves", _constant(graph, "mirror/first", 0, np.int64)], ["mirror/a"], axis=0),
        helper.make_node("Gather", ["mirror/halves", _constant(graph, "mirror/second", 1, np.int64)], ["mirror/b"], axis=0),
        helper.make_node("Add", ["mirror/a", "mirror/b"], ["mirror/sum"]),
        helper.make_node("Mul", ["mirror/sum", _constant(graph, "mirror/half", 0.5, np.float32)], [scores]),
    ]
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # shapes inside changed (2N): let ONNX Runtime infer them again
    onnx.checker.check_model(out)
    description = config.get("description") or config.get("recipe", "")
    return _with_config(out, {**config, "mirror_average": True,
                              "description": f"{description}; each face averaged with its mirror image"})


def averaged(models: list, weights: list[float] | None = None):
    """One model whose probabilities are the `weights`-weighted mean of `models`' (default: equal).

    Weights are fixed by the caller, not fitted: the members' own validation splits may be gone
    (the bundled model's are), and fitting weights on the test faces would only flatter them.
    """
    onnx, helper = _onnx(), _onnx().helper
    if len(models) < 2:
        raise FerkitError("an ensemble needs at least two models")
    weights = list(weights) if weights is not None else [1.0] * len(models)
    if len(weights) != len(models) or min(weights) <= 0:
        raise FerkitError(f"give one positive weight per model ({len(models)}), got {weights}")
    weights = [w / sum(weights) for w in weights]
    configs = [read_config(m) for m in models]
    first = configs[0]
    for i, config in enumerate(configs[1:], 1):
        if (config.get("classes"), config.get("image_size")) != (first.get("classes"), first.get("image_size")):
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
    graph.node.append(helper.make_node("Sum", parts, [PROBABILITIES]))
    _merge_opsets(out, models, opset)
    onnx.checker.check_model(out)
    members = [{**{k: c.get(k) for k in ("recipe", "model", "epochs", "description", "mirror_average")},
                "weight": round(w, 6)} for c, w in zip(configs, weights)]
    description = " + ".join(f"{m['weight']:.3g} x {m['description'] or m['recipe']}" for m in members)
    return _with_config(out, {**{k: first.get(k) for k in SPLIT_PROTOCOL},
                              "recipe": "ensemble", "model": "ensemble", "quantize": first.get("quantize"),
                              # Members that all average each face with its mirror image make one that does.
                              "mirror_average": all(c.get("mirror_average") for c in configs),
                              "description": f"weighted mean of {len(models)} models' probabilities: {description}",
                              "members": members})


def _add_member(graph, model, prefix: str, weight: float) -> str:
    """`model`'s nodes, names prefixed, reading `graph`'s input; returns its weighted output's name."""
    member = _onnx().compose.add_prefix(model, prefix)
    inner_in, inner_out = member.graph.input[0].name, member.graph.output[0].name
    for node in member.graph.node:
        node.input[:] = [FACE if name == inner_in else name for name in node.input]
    graph.node.extend(member.graph.node)
    graph.initializer.extend(member.graph.initializer)
    weighted = f"{prefix}weighted"
    graph.node.append(_onnx().helper.make_node(
        "Mul", [inner_out, _constant(graph, f"{prefix}weight", weight, np.float32)], [weighted]))
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


def _default_opset(model) -> int:
    return next(e.version for e in model.opset_import if e.domain in ("", "ai.onnx"))


def _at_opset(model, opset: int):
    if _default_opset(model) == opset:
        return model
    return _onnx().version_converter.convert_version(model, opset)


def _renamed(value_info, name: str):
    renamed = copy.deepcopy(value_info)
    renamed.name = name
    return renamed


def load(path: str | Path):
    return _onnx().load(str(path))


def save(model, path: str | Path) -> Path:
    _onnx().save(model, str(path))
    return Path(path)
