"""moeviz's own GGUF header reader (gguf_header.py) against gguf's GGUFReader: the same
ModelInfo for every generated architecture, the demo model and the Qwen3-30B-A3B-shaped
fixture (152k-token vocabulary: seconds with GGUFReader, well under one with ours;
bench/qwen3_shape.py times it), and the same refusals."""
import struct

import gguf
import pytest
from test_archs import arch_models  # noqa: F401 - the fixture

import moeviz.gguf_header as gguf_header
from moeviz.demo import default_model_path
from moeviz.gguf_info import ModelFileError, read_model_info


def both(path, monkeypatch):
    ours = read_model_info(path)
    with monkeypatch.context() as m:
        m.setattr(gguf_header, "Header", lambda p: gguf.GGUFReader(p, "r"))
        theirs = read_model_info(path)
    return ours, theirs


def test_same_info_as_gguf_reader_on_every_model(arch_models, monkeypatch):  # noqa: F811
    paths = sorted(arch_models.glob("*.gguf")) + [default_model_path()]
    assert len(paths) > 100
    for path in paths:
        ours, theirs = both(path, monkeypatch)
        assert ours == theirs, path


@pytest.mark.slow
def test_same_info_on_the_qwen3_30b_shape(tmp_path, monkeypatch):
    from moeviz.fixtures import write_fixture
    from moeviz.fixtures.models import QWEN3_30B_SHAPE

    path = write_fixture(tmp_path / "q.gguf", QWEN3_30B_SHAPE)
    ours, theirs = both(path, monkeypatch)
    assert ours == theirs and ours.n_vocab == 151_936 and ours.chat_template == theirs.chat_template


def _retype_first_tensor(src, dst, raw_type):
    """Copy of `src` whose first tensor has ggml type `raw_type`."""
    data = bytearray(src.read_bytes())
    h = gguf_header.Header(src)
    name = h.tensors[0].name.encode()
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    (n_dims,) = struct.unpack_from("<I", data, at)
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, raw_type)
    h.close()
    dst.write_bytes(bytes(data))
    return dst


def test_unknown_tensor_type_is_one_line(tmp_path):
    path = _retype_first_tensor(default_model_path(), tmp_path / "bad.gguf", 250)
    with pytest.raises(ModelFileError) as e:
        read_model_info(path)
    assert "\n" not in str(e.value) and "damaged" in str(e.value)


def test_header_errors_are_a_moeviz_error_kind(tmp_path):
    """What the reader refuses is the user's file to fix: a UserError (errors.py), one line."""
    from moeviz.errors import UserError

    path = _retype_first_tensor(default_model_path(), tmp_path / "bad.gguf", 250)
    with pytest.raises(UserError) as e:
        gguf_header.Header(path)
    assert isinstance(e.value, gguf_header.HeaderError) and e.value.one_line() == "tensor " + \
        gguf_header.Header(default_model_path()).tensors[0].name + " has unknown type 250"
