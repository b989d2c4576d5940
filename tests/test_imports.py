"""scalekit without torchvision (issue 22, item 3): every layer below
``scalekit.detection`` imports and works in a process where ``import torchvision``
fails; ``scalekit.detection`` and the drawing helper say which extra to install.
Each check runs in a fresh interpreter so that nothing imported by other tests counts."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NO_TORCHVISION = "import sys\nsys.modules['torchvision'] = None  # `import torchvision` now raises ImportError\n"


def _run(code: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_import_scalekit_does_not_import_torchvision():
    out = _run("""
        import sys
        import scalekit, scalekit.ops, scalekit.boxes, scalekit.evaluation, scalekit.chips, scalekit.scale
        import scalekit.heads, scalekit.datasets, scalekit.drawing, scalekit.video, scalekit.sequence
        import scalekit.autofocus, scalekit.slicing
        print(sorted(m for m in sys.modules if m.split(".")[0] == "torchvision"))
    """)
    assert out.stdout.strip() == "[]"


def test_the_layers_work_without_torchvision_and_detection_names_the_extra():
    out = _run(NO_TORCHVISION + textwrap.dedent("""
        import torch
        import scalekit, scalekit.ops, scalekit.boxes, scalekit.evaluation, scalekit.chips, scalekit.scale
        import scalekit.heads, scalekit.datasets, scalekit.drawing
        from scalekit.ops import nms
        from scalekit.scale import Pyramid
        keep = nms(torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([0.9, 0.8]), 0.5)
        dets = Pyramid().detect(lambda im: (torch.tensor([[1.0, 1, 5, 5]]), torch.tensor([0.9]), torch.tensor([1])),
                                torch.zeros(3, 48, 64))
        print("nms", keep.tolist(), "pyramid", dets["labels"].tolist())
        for attempt in (lambda: scalekit.detection, lambda: __import__("scalekit.detection")):
            try:
                attempt()
            except ImportError as exc:
                print("detection:", exc)
        try:
            scalekit.drawing.draw_detections(torch.zeros(3, 8, 8))
        except ImportError as exc:
            print("drawing:", exc)
    """))
    lines = out.stdout.splitlines()
    assert lines[0] == "nms [0] pyramid [1]"
    assert len(lines) == 4, out.stdout
    for line in lines[1:3]:
        assert line.startswith("detection: scalekit.detection needs torchvision") and \
            "pip install 'torch-scalekit[detection]'" in line
    assert lines[3].startswith("drawing: draw_detections needs torchvision") and "[detection]" in lines[3]


def test_detection_is_an_attribute_of_scalekit_when_torchvision_is_there():
    out = _run("""
        import scalekit
        print(scalekit.detection.keep_input_size.__module__, "detection" in dir(scalekit))
    """)
    assert out.stdout.strip() == "scalekit.detection.transform True"


def test_torchvision_is_the_detection_extra_not_a_dependency():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    deps = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert "torchvision" not in deps
    assert project["optional-dependencies"]["detection"] == ["torchvision"]
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "pip install build ninja && python -m build --wheel --no-isolation" in readme
    assert "scalekit[detection]" in readme
