import hashlib
import http.server
import io
import json
import random
import shutil
import tarfile
import threading
import urllib.error
from pathlib import Path

import pytest

from mmsets.data import mmimdb
from mmsets.data.manifest import read_manifest, write_manifest
from mmsets.data.mmimdb import GENRES, MMIMDbError, download_mmimdb, load_mmimdb, unpack_mmimdb

# --- synthetic MM-IMDb layout (our own made-up text, nothing third-party) ---


def _make_layout(root: Path, items: dict, split: dict) -> Path:
    (root / "dataset").mkdir(parents=True)
    (root / "split.json").write_text(json.dumps(split))
    for item_id, content in items.items():
        path = root / "dataset" / f"{item_id}.json"
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return root


def _synthetic(root: Path) -> Path:
    items = {
        "1": {"plot": ["First paragraph.", "  Second paragraph.  "], "genres": ["Drama", "Comedy"],
              "title": "A Made-Up Film", "director": [{"name": "Someone"}], "cast": [], "year": 1999},
        "2": {"plot": ["   "], "genres": ["Reality-TV", "Sci-Fi", "Sci-Fi"]},
        "3": {"plot": "A single string plot.", "genres": ["Talk-Show"]},
    }
    _make_layout(root, items, {"train": ["2", "1"], "dev": ["3"], "test": []})
    (root / "dataset" / "1.jpeg").write_bytes(b"\xff\xd8not really a jpeg")
    return root


def test_synthetic_fields_and_labels(tmp_path):
    m = load_mmimdb(_synthetic(tmp_path / "mmimdb"))
    f = m.frame.set_index("id")
    assert list(m.frame["id"]) == ["2", "1", "3"]  # split.json order
    assert list(m.frame["split"]) == ["train", "train", "dev"]
    assert f.loc["1", "text_plot"] == "First paragraph.\nSecond paragraph."
    assert f.loc["1", "text_title"] == "A Made-Up Film"
    assert f.loc["2", "text_plot"] is None and f.loc["2", "text_title"] is None
    assert f.loc["3", "text_plot"] == "A single string plot."
    assert f.loc["1", "image"].endswith("1.jpeg") and Path(f.loc["1", "image"]).is_absolute()
    assert f.loc["2", "image"] is None
    assert f.loc["1", "labels"] == ["Drama", "Comedy"]  # GENRES order
    assert f.loc["2", "labels"] == ["Sci-Fi"]
    assert f.loc["3", "labels"] == []
    assert m.extra["dropped_genres"] == {"Reality-TV": 1, "Talk-Show": 1}
    assert m.extra["without_plot"] == 1 and m.extra["without_labels"] == 1 and m.extra["without_image"] == 2


def test_root_may_be_parent(tmp_path):
    _synthetic(tmp_path / "mmimdb")
    assert len(load_mmimdb(tmp_path)) == 3
    with pytest.raises(FileNotFoundError, match="split.json"):
        load_mmimdb(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'{"plot": ["unterminated', "bad_json"),
        ('{"plot": ["caf\u00e9"], "genres": ["Drama"]}'.encode("latin-1"), "not_utf8"),
        ({"genres": ["Drama"]}, "missing_field"),
        ({"plot": ["x"], "genres": "Drama", "title": 3}, None),  # genres as a string, odd title: accepted
        ({"plot": [1, 2], "genres": ["Drama"]}, "bad_field"),
        (["not", "a", "dict"], "missing_field"),
    ],
)
def test_bad_item_is_counted_skip_or_strict_error(tmp_path, content, reason, caplog):
    root = _make_layout(tmp_path, {"7": content, "8": {"plot": ["ok"], "genres": ["War"]}},
                        {"train": ["7", "8"], "dev": [], "test": []})
    m = load_mmimdb(root)
    if reason is None:
        assert len(m) == 2 and m.extra["skipped"] == {}
        return
    assert list(m.frame["id"]) == ["8"]
    assert m.extra["skipped"] == {reason: 1}
    assert m.extra["errors"] == [{"id": "7", "reason": reason}]
    assert "7.json" in caplog.text
    with pytest.raises(MMIMDbError, match=r"item 7: .*7\.json") as err:
        load_mmimdb(root, strict=True)
    assert err.value.reason == reason


def test_missing_json_and_duplicate_id(tmp_path):
    root = _make_layout(tmp_path, {"1": {"plot": ["p"], "genres": ["Drama"]}},
                        {"train": ["1", "404"], "dev": ["1"], "test": []})
    m = load_mmimdb(root)
    assert list(m.frame["id"]) == ["1"]
    assert m.extra["skipped"] == {"missing_json": 1, "duplicate_id": 1}
    with pytest.raises(MMIMDbError, match="item 404"):
        load_mmimdb(root, strict=True)


# --- the real MM-IMDb sample ---


@pytest.mark.shared
def test_real_sample(mmimdb_sample, tmp_path):
    m = load_mmimdb(mmimdb_sample)
    assert len(m) == 1136 and m.dataset == "mmimdb" and m.task == "multilabel"
    assert m.frame["split"].value_counts().to_dict() == {"train": 681, "dev": 171, "test": 284}
    assert m.frame["image"].notna().sum() == 799 and m.extra["without_image"] == 337
    assert m.label_names == GENRES and len(set(m.label_names)) == 23
    assert all(set(labels) <= set(GENRES) and labels for labels in m.frame["labels"])
    assert m.frame["text_plot"].map(lambda t: isinstance(t, str) and t.strip() != "").all()
    assert m.extra["skipped"] == {}
    split = json.loads((mmimdb_sample / "split.json").read_text())
    assert list(m.frame["id"]) == split["train"] + split["dev"] + split["test"]
    path = tmp_path / "manifest.parquet"
    write_manifest(m, path)
    back = read_manifest(path)
    assert back.extra == m.extra and list(back.frame["labels"]) == list(m.frame["labels"])


@pytest.mark.shared
def test_real_items_with_extra_keys_and_corruption(mmimdb_sample, tmp_path):
    split = json.loads((mmimdb_sample / "split.json").read_text())
    ids = split["train"][:4]
    root = tmp_path / "mmimdb"
    (root / "dataset").mkdir(parents=True)
    (root / "split.json").write_text(json.dumps({"train": ids, "dev": [], "test": []}))
    for item_id in ids:
        for ext in (".json", ".jpeg"):
            if (mmimdb_sample / "dataset" / (item_id + ext)).exists():
                shutil.copy(mmimdb_sample / "dataset" / (item_id + ext), root / "dataset")
    extra = {"title": "Some Title", "director": [{"name": "X"}], "cast": [{"name": "Y"}],
             "plot outline": "short", "year": 1920, "rating": 7.1}
    for item_id in ids[:2]:
        path = root / "dataset" / f"{item_id}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **extra}))
    (root / "dataset" / f"{ids[2]}.json").write_text('{"plot": ["broken')
    (root / "dataset" / f"{ids[3]}.json").write_bytes(b'{"plot": ["\xe9t\xe9"], "genres": ["Drama"]}')

    m = load_mmimdb(tmp_path)
    assert list(m.frame["id"]) == ids[:2]
    assert list(m.frame["text_title"]) == ["Some Title", "Some Title"]
    assert m.extra["skipped"] == {"bad_json": 1, "not_utf8": 1}
    assert m.extra["errors"] == [{"id": ids[2], "reason": "bad_json"}, {"id": ids[3], "reason": "not_utf8"}]
    with pytest.raises(MMIMDbError, match=f"item {ids[2]}"):
        load_mmimdb(tmp_path, strict=True)


# --- download and unpack, against a local server ---


def _archive_bytes(tmp_path: Path) -> bytes:
    src = _synthetic(tmp_path / "src" / "mmimdb")
    (src / "dataset" / "pad.bin").write_bytes(random.Random(0).randbytes(20_000))  # incompressible: many chunks
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="mmimdb")
    return buf.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""
    honour_range = True
    cut_first = False  # first response promises everything but sends half, then drops
    requests: list

    def do_GET(self):
        rng = self.headers.get("Range")
        self.requests.append(rng)
        data, start = self.payload, 0
        if rng and self.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_first and len(self.requests) == 1:
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    payload = _archive_bytes(tmp_path)
    handler = type("H", (_Handler,), {"payload": payload, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(120, httpd.shutdown)  # never outlive a stuck test
    watchdog.daemon = True
    watchdog.start()
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/mmimdb.tar.gz"
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_download_unpack_load(server, tmp_path):
    handler, url = server
    (tmp_path / "dl").mkdir()
    out = download_mmimdb(tmp_path / "dl", url=url, sha256=hashlib.sha256(handler.payload).hexdigest(),
                          chunk=1000, progress=False)
    assert out == tmp_path / "dl" / "mmimdb.tar.gz"
    assert out.read_bytes() == handler.payload and not out.with_name(out.name + ".part").exists()
    assert handler.requests == [None]
    assert download_mmimdb(out, url=url) == out and len(handler.requests) == 1  # already there
    root = unpack_mmimdb(out, tmp_path / "data")
    assert root == tmp_path / "data" / "mmimdb" and (tmp_path / "data" / mmimdb.MARKER).exists()
    assert len(load_mmimdb(tmp_path / "data")) == 3
    (root / "split.json").write_text("changed")
    assert unpack_mmimdb(out, tmp_path / "data") == root  # marker: not extracted again
    assert (root / "split.json").read_text() == "changed"
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".unpack")]


def test_download_resumes_from_part(server, tmp_path):
    handler, url = server
    dest = tmp_path / "mmimdb.tar.gz"
    n = len(handler.payload) // 3
    dest.with_name(dest.name + ".part").write_bytes(handler.payload[:n])
    download_mmimdb(dest, url=url, chunk=512)  # with the progress bar
    assert dest.read_bytes() == handler.payload
    assert handler.requests == [f"bytes={n}-"]


def test_download_part_already_complete(server, tmp_path):
    handler, url = server
    dest = tmp_path / "mmimdb.tar.gz"
    dest.with_name(dest.name + ".part").write_bytes(handler.payload)
    download_mmimdb(dest, url=url, progress=False)  # server answers 416
    assert dest.read_bytes() == handler.payload
    assert handler.requests == [f"bytes={len(handler.payload)}-"]


def test_download_server_ignores_range(server, tmp_path):
    handler, url = server
    handler.honour_range = False
    dest = tmp_path / "mmimdb.tar.gz"
    dest.with_name(dest.name + ".part").write_bytes(b"garbage" * 10)
    download_mmimdb(dest, url=url, progress=False)
    assert dest.read_bytes() == handler.payload


def test_download_retries_after_drop(server, tmp_path, monkeypatch):
    handler, url = server
    handler.cut_first = True
    monkeypatch.setattr(mmimdb.time, "sleep", lambda s: None)
    dest = tmp_path / "mmimdb.tar.gz"
    download_mmimdb(dest, url=url, chunk=256, progress=False)
    assert dest.read_bytes() == handler.payload
    assert len(handler.requests) == 2 and handler.requests[0] is None
    assert int(handler.requests[1].removeprefix("bytes=").rstrip("-")) >= len(handler.payload) // 2


def test_download_checksum_mismatch(server, tmp_path):
    handler, url = server
    dest = tmp_path / "mmimdb.tar.gz"
    with pytest.raises(MMIMDbError, match="sha256"):
        download_mmimdb(dest, url=url, sha256="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_download_http_error_is_not_retried(server, tmp_path, monkeypatch):
    handler, url = server
    def not_found(self):
        self.requests.append(self.headers.get("Range"))
        self.send_error(404)

    monkeypatch.setattr(handler, "do_GET", not_found)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        download_mmimdb(tmp_path / "x.tar.gz", url=url, progress=False)
    assert handler.requests == [None]


def test_unpack_refuses_unsafe_member(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(tarfile.FilterError):
        unpack_mmimdb(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / mmimdb.MARKER).exists()


def test_download_stale_part_larger_than_file(server, tmp_path, monkeypatch):
    handler, url = server
    monkeypatch.setattr(mmimdb.time, "sleep", lambda s: None)
    dest = tmp_path / "mmimdb.tar.gz"
    dest.with_name(dest.name + ".part").write_bytes(handler.payload * 2)
    download_mmimdb(dest, url=url, progress=False)  # 416 without a match: start over
    assert dest.read_bytes() == handler.payload
    assert handler.requests == [f"bytes={2 * len(handler.payload)}-", None]


@pytest.mark.parametrize("content, match", [("not json", "not valid UTF-8 JSON"), ("[1, 2]", "expected an object")])
def test_a_bad_split_file_is_named(tmp_path, content, match):
    from mmsets.data.mmimdb import MMIMDbError, load_mmimdb

    (tmp_path / "dataset").mkdir()
    (tmp_path / "split.json").write_text(content)
    with pytest.raises(MMIMDbError, match=f"split.json: {match}"):
        load_mmimdb(tmp_path)
