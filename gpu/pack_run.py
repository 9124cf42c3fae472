"""Carry an Othello run off a machine that sends back only a few small files (a lent GPU machine):
``pack`` writes its weights as fp16 shards under 15 MB and one tar of the small files plus the
first and last 2000 games of its dataset; ``unpack`` rebuilds a run directory that
``python -m interp eval`` and ``othello-report`` accept (fp32 weights from the fp16 copy; its
dataset is those 4000 games, the last 2000 held out as before).

    python gpu/pack_run.py pack RUN_DIR OUT_DIR
    python gpu/pack_run.py unpack OUT_DIR NEW_RUN_DIR

The H100 run's report in the README was made this way; fp16 rounding moved its top-1 legal rate
by less than 1e-3.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SHARD_BYTES = 15_000_000
EDGE_GAMES = 2000
SMALL_FILES = ("config.json", "metrics.jsonl", "final_metrics.json")


def pack(run: Path, out: Path) -> str:
    import numpy as np
    from safetensors.torch import load_file, save_file

    from training import runs

    cfg = json.loads((run / runs.CONFIG).read_text())
    state = load_file(str(run / runs.WEIGHTS["raw"]))
    shards, size = [{}], 0
    for key in sorted(state):
        t = state[key].half().contiguous()
        if size + t.numel() * 2 > SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += t.numel() * 2
    out.mkdir(parents=True, exist_ok=True)
    for i, shard in enumerate(shards):
        save_file(shard, str(out / f"w{i}.safetensors"))
    games = np.load(Path(cfg["othello"]["data"]) / "games.npy", mmap_mode="r")
    edge = np.concatenate([np.asarray(games[:EDGE_GAMES]), np.asarray(games[-EDGE_GAMES:])])
    with tarfile.open(out / "meta.tar", "w") as tar:
        for name in SMALL_FILES:
            if (run / name).exists():
                tar.add(run / name, arcname=name)
        buf = io.BytesIO()
        np.save(buf, edge)
        info = tarfile.TarInfo("games.npy")
        info.size = buf.getbuffer().nbytes
        buf.seek(0)
        tar.addfile(info, buf)
    return f"packed {len(state)} tensors into {len(shards)} shards and {edge.shape[0]} games into {out}"


def unpack(src: Path, run: Path) -> str:
    from safetensors.torch import load_file

    from training import atomic, runs

    (run / "data").mkdir(parents=True, exist_ok=True)
    with tarfile.open(src / "meta.tar") as tar:
        for member in tar.getmembers():
            if member.name not in SMALL_FILES + ("games.npy",) or not member.isfile():
                raise SystemExit(f"error: unexpected member {member.name!r} in {src / 'meta.tar'}")
            target = run / "data" / member.name if member.name == "games.npy" else run / member.name
            data = tar.extractfile(member).read()
            atomic.write_with(target, lambda tmp, data=data: tmp.write_bytes(data))
    state = {}
    for shard in sorted(src.glob("w*.safetensors")):
        state.update({k: v.float() for k, v in load_file(str(shard)).items()})
    step = json.loads((run / runs.FINAL).read_text())["step"] if (run / runs.FINAL).exists() else 0
    runs.save_weights(run / runs.WEIGHTS["raw"], state, step)
    cfg = json.loads((run / runs.CONFIG).read_text())
    cfg["othello"]["data"] = str((run / "data").resolve())
    cfg["othello"]["val_games"] = EDGE_GAMES
    atomic.write_json(run / runs.CONFIG, cfg)
    atomic.write_json(
        run / "data" / "games.json",
        {"count": 2 * EDGE_GAMES, "note": "first and last games of the packed run's dataset"},
    )
    return f"unpacked {len(state)} tensors into {run}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="RUN_DIR -> OUT_DIR of small files")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    u = sub.add_parser("unpack", help="OUT_DIR -> a new run directory")
    u.add_argument("src_dir", type=Path)
    u.add_argument("run_dir", type=Path)
    args = ap.parse_args()
    if args.cmd == "pack":
        if not (args.run_dir / "weights_raw.safetensors").is_file():
            raise SystemExit(f"error: {args.run_dir} holds no weights_raw.safetensors")
        print(pack(args.run_dir, args.out_dir))
    else:
        if not (args.src_dir / "meta.tar").is_file():
            raise SystemExit(f"error: {args.src_dir} holds no meta.tar")
        print(unpack(args.src_dir, args.run_dir))


if __name__ == "__main__":
    main()
