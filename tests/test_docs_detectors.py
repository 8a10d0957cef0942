"""The config examples of the detector-type pages (docs/detectors/*.md) are valid producer configs.

Each ```yaml block with a ``detectors`` section is read with the top-level block the page gives
(proposal, data_root, ...) and validated by ``ProducerConfig``, as ``smd_producer`` does before it
reads any data: a key renamed or removed in the schema, or a function parameter that no longer
exists, fails here instead of in a user's first run.
"""
import re
from pathlib import Path

import pytest
import yaml

from smalldata.config.producer import ProducerConfig

DOCS = Path(__file__).resolve().parents[1] / "docs" / "detectors"
TOP = {"proposal": 2937, "data_root": "data", "calib_dir": "calib", "output_dir": "out"}


def yaml_blocks(page: str):
    """The ```yaml blocks of a page that configure detectors, as mappings."""
    text = (DOCS / page).read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)]
    return [b for b in blocks if isinstance(b, dict) and "detectors" in b]


EXAMPLES = [(page, i, block) for page in ("cameras.md", "dssc.md") for i, block in enumerate(yaml_blocks(page))]


def test_the_pages_have_their_examples():
    """One example per camera preset on the camera page, and the DSSC's on its page."""
    cameras = {det["camera"] for page, _, block in EXAMPLES if page == "cameras.md"
               for det in block["detectors"].values() if det.get("type") == "camera"}
    assert cameras == {"hrixs", "maranax", "newton", "fastccd"}
    assert any(page == "dssc.md" for page, _, _ in EXAMPLES)


@pytest.mark.parametrize("page,index,block", EXAMPLES, ids=[f"{p}[{i}]" for p, i, _ in EXAMPLES])
def test_example_is_a_valid_config(tmp_path, page, index, block):
    (tmp_path / "data").mkdir()
    raw = {**TOP, **block}
    path = tmp_path / "producer.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = ProducerConfig.from_file(path)
    for name, det in block["detectors"].items():
        kind = det.get("type", "dssc")
        assert config.detectors[name]["type"] == kind
        # every function of the example is built with the parameters the page gives
        built = config.functions(name)
        assert [f.name for f in built] == [f.get("name", f["type"]) for f in det["functions"]]
    cameras = [n for n, d in block["detectors"].items() if d.get("type") == "camera"]
    assert config.per_train_detectors == cameras
