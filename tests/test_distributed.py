"""`torchrun --nproc_per_node 2` (gloo, CPU) equals one process with the same global batch."""

import dataclasses
import json
import os
import subprocess
import sys

import torch

from hifigan.cli import main
from hifigan.train.run import read_training_checkpoint
from test_train import BASE, MODEL, clips  # noqa: F401  (the fixture)


def test_two_processes_equal_one(clips, tmp_path):  # noqa: F811
    (tmp_path / "model.json").write_text(json.dumps(MODEL.to_dict()))
    (tmp_path / "train.json").write_text(json.dumps({**dataclasses.asdict(BASE), "max_steps": 2}))
    common = ["train", "--data", str(clips[0].audio.parent), "--config", str(tmp_path / "model.json"),
              "--train-config", str(tmp_path / "train.json")]
    assert main([*common, "--run-dir", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "hifigan", *common, "--run-dir", str(tmp_path / "two")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = read_training_checkpoint(tmp_path / "one"), read_training_checkpoint(tmp_path / "two")
    assert one["state"] == two["state"]
    for part in ("generator", "mpd", "msd"):
        for key, value in one[part].items():
            assert torch.allclose(value, two[part][key], atol=1e-5), (part, key)
    assert len(list((tmp_path / "two" / "checkpoints").iterdir())) == 1  # written by rank 0 only
