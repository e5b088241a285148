"""`tunesmith serve` and `tunesmith chat` on the command line: start-up refusals and the lines they print."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from tunesmith import serve  # noqa: E402
from tunesmith.errors import TunesmithError  # noqa: E402

from serve_helpers import build_served_model  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_served_model(tmp_path_factory.mktemp("cli") / "tiny", max_positions=64)


def test_a_max_model_len_past_the_trained_positions_is_refused(model, cli, tmp_path):
    """It was accepted; then a long prompt raised (learned positions: IndexError, a 500) or was answered from
    past the trained context (rotary positions)."""
    result = cli("serve", str(model), "--port", "0", "--db", str(tmp_path / "x.sqlite"), "--max-model-len", "256",
                 timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and "256" in error[0] and "max_position_embeddings (64)" in error[0], result.stderr
    config = serve.ServeConfig(model=str(model), port=0, db=tmp_path / "y.sqlite", max_model_len=65)
    with pytest.raises(TunesmithError, match="65 is larger than the model's max_position_embeddings"):
        serve.start(config)
    for asked, served in ((None, 64), (32, 32)):
        config = serve.ServeConfig(model=str(model), port=0, db=tmp_path / "z.sqlite", max_model_len=asked)
        with serve.start(config) as server:
            assert server.state.models.max_len == served
