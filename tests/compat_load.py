"""Run TorchScript chunks with another torch (the oldest a board runs) and save their outputs.

Usage: python compat_load.py DIR. ``DIR/cases.json`` lists cases ``{"name", "chain": [file, ...],
"input": "x.npy", "out": "y"}``: the files are loaded with ``torch.jit.load`` and run one after the
other on the input; every output tensor (a tuple's items in order) is saved as ``y_<i>.npy``.
Needs only torch and numpy (what a board has), not pantheon. Prints one JSON line with the torch version.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

root = Path(sys.argv[1])
for case in json.loads((root / "cases.json").read_text()):
    x = torch.from_numpy(np.load(root / case["input"]))
    with torch.no_grad():
        for f in case["chain"]:
            x = torch.jit.load(str(root / f))(x)
    outs = list(x) if isinstance(x, (tuple, list)) else [x]
    for i, t in enumerate(outs):
        np.save(root / f"{case['out']}_{i}.npy", t.numpy())
print(json.dumps({"torch": torch.__version__, "cases": len(json.loads((root / "cases.json").read_text()))}))
