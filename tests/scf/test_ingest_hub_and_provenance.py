"""scf ingest: the --config name, the versions it records, and what --push-to-hub uploads (no local paths)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from ingest_cli import OfflineHfApi, ingest, rows, write_image


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", ".hidden", "-x", "a b", ""])
def test_config_must_be_a_plain_name(tmp_path, face, name):
    """Review 10 #7: the name is joined to --out, so '..' or a path would write the dataset elsewhere."""
    write_image(tmp_path / "root/train/real/a.png", face)
    r = ingest("--source", "image-folder", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"),
               "--config", name)
    assert r.exit_code == 1
    assert r.output == (f"Error: --config must be a plain config name (letters, digits, '_', '.', '-'; starting "
                        f"with a letter or digit; no '/'), got {name!r}: it names the folder OUT/<CONFIG> and the "
                        "Hub dataset config\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # nothing written, inside --out or out of it


def test_a_plain_config_name_with_dots_and_dashes_is_accepted(tmp_path, face):
    write_image(tmp_path / "root/train/real/a.png", face)
    r = ingest("--source", "image-folder", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"),
               "--config", "OULU_p1.fold-2")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out/OULU_p1.fold-2/data").is_dir() and "config_name: OULU_p1.fold-2" in \
        (tmp_path / "out/README.md").read_text()


def test_versions_are_recorded_and_a_resume_with_other_versions_goes_on(tmp_path, face):
    """Review 9 M1: the software the crops depend on is recorded; it is provenance, not a setting."""
    import cv2

    write_image(tmp_path / "root/train/real/a.png", face)
    args = ("--source", "image-folder", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"))
    assert ingest(*args).exit_code == 0
    record = json.loads((tmp_path / "out/ingest_config.json").read_text())
    versions = record["versions"]
    assert versions["ifas-scf"] == "0.1.0" and versions["cv2"] == cv2.__version__
    assert set(versions) >= {"python", "torch", "datasets", "opencv-python-headless", "pyarrow"}
    assert json.loads((tmp_path / "out/ingest_summary.json").read_text())["settings"]["versions"] == versions
    assert f"- Software: ifas-scf 0.1.0, opencv-python-headless {versions['opencv-python-headless']}, cv2 " \
           f"{cv2.__version__}" in (tmp_path / "out/README.md").read_text()

    record["versions"] = {"ifas-scf": "0.0.9", "cv2": "4.0.0"}  # written by older software
    (tmp_path / "out/ingest_config.json").write_text(json.dumps(record))
    write_image(tmp_path / "root/train/real/b.png", face)
    r = ingest(*args)
    assert r.exit_code == 0, r.output
    assert [row["path"] for row in rows(tmp_path / "out")] == ["train/real/a.png", "train/real/b.png"]
    assert json.loads((tmp_path / "out/ingest_config.json").read_text())["versions"] == versions  # the new ones

    legacy = {k: v for k, v in record.items() if k != "versions"}  # an ingest_config.json from before M1
    (tmp_path / "out/ingest_config.json").write_text(json.dumps(legacy))
    assert ingest(*args).exit_code == 0


def _project(tmp_path: Path, face) -> tuple[Path, Path, Path]:
    """A csv project under a 'home' folder: two images, a manifest naming one missing file too."""
    root = tmp_path / "home" / "ana" / "captures"
    write_image(root / "a.png", face)
    write_image(root / "b.png", face)
    manifest = tmp_path / "home" / "ana" / "lists" / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("path,label,split\na.png,1,train\nb.png,0,train\ngone.png,0,test\n")
    return root, manifest, tmp_path / "bench"


def test_push_uploads_a_copy_without_local_paths_and_resume_still_works(tmp_path, face):
    """Review 10 #6: ingest_config.json (root, lists, their hashes), ingest_summary.json and skipped.jsonl
    name local paths; the uploaded copy says <local>/<name> instead, the local files are unchanged."""
    root, manifest, out = _project(tmp_path, face)
    args = ("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(out), "--config", "mine",
            "--push-to-hub", "me/fas")
    uploaded: dict[str, str] = {}

    def upload_folder(folder_path, **kw):
        folder = Path(folder_path)
        uploaded.update({str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()})

    with mock.patch("huggingface_hub.HfApi") as api_cls:
        api_cls.return_value.create_repo.return_value = "https://huggingface.co/datasets/me/fas"
        api_cls.return_value.upload_folder.side_effect = upload_folder
        r = ingest(*args)
    assert r.exit_code == 0, r.output
    api = api_cls.return_value
    api.create_repo.assert_called_once_with("me/fas", repo_type="dataset", exist_ok=True, private=True)
    assert api.upload_folder.call_args.kwargs["folder_path"] == str(tmp_path / ".bench.hub-upload")
    assert not (tmp_path / ".bench.hub-upload").exists()
    local = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert "mine/.lock" in local  # the run's lock (review 16 M1) stays local: hidden files are not staged
    assert set(uploaded) == local - {"mine/.lock"}
    assert {"README.md", "mine/README.md", "mine/ingest_config.json", "mine/ingest_summary.json",
            "mine/skipped.jsonl"} <= set(uploaded)
    for name, data in uploaded.items():
        if name.startswith("mine/data/"):
            assert data == (out / name).read_bytes()
            continue
        assert str(tmp_path).encode() not in data, name
    config = json.loads(uploaded["mine/ingest_config.json"])
    assert config["root"] == "<local>/captures" and config["lists"] == ["<local>/manifest.csv"]
    assert list(config["list_sha256"]) == ["<local>/manifest.csv"]
    skip = json.loads(uploaded["mine/skipped.jsonl"].decode().splitlines()[0])
    assert skip["detail"].endswith("nothing at <local>/captures/gone.png"), skip
    # locally nothing changed: the resume reads the real paths
    assert json.loads((out / "mine/ingest_config.json").read_text())["root"] == str(root)
    with mock.patch("huggingface_hub.HfApi"):
        r = ingest(*args)
    assert r.exit_code == 0, r.output


def test_a_failed_push_names_the_copy_without_local_paths(tmp_path, face, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineHfApi)
    root, manifest, out = _project(tmp_path, face)
    r = ingest("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(out),
               "--push-to-hub", "me/mine")
    assert r.exit_code == 1
    stage = tmp_path / ".bench.hub-upload"
    assert r.output.strip().splitlines()[-1] == (
        f"Error: push to me/mine failed: ConnectionError: Name or service not known; the dataset is in {out}: rerun "
        "the same command to retry (nothing is ingested again), or hf upload --repo-type dataset --private me/mine "
        f"{stage} (its copy without local paths; delete it afterwards)")
    assert json.loads((stage / "ingest_config.json").read_text())["root"] == "<local>/captures"


def test_redaction_is_one_pass_on_whole_paths_and_the_home_folder_reads_tilde(tmp_path, monkeypatch):
    """A replacement is never replaced again (a root named like the home folder), and only whole paths or
    their starts are replaced; '--out .' stages beside the current folder."""
    from scf.hub import path_replacements, redact_text, staged_folder

    home = tmp_path / "root"  # as when the home folder is /root and --root is .../root
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    data = tmp_path / "data" / "root"
    data.mkdir(parents=True)
    reps = path_replacements([str(data), "org/name", None, "not-here"])
    assert reps == [(str(data), "<local>/root"), (str(home), "~")]
    text = json.dumps({"root": str(data), "detail": f"nothing at {data}/a.png", "other": f"{data}2/x",
                       "file": f"{data}.csv", "models": f"{home}/blip2", "deeper": f"/mnt{home}"})
    assert json.loads(redact_text(text, reps)) == {
        "root": "<local>/root", "detail": "nothing at <local>/root/a.png", "other": f"{data}2/x",
        "file": f"{data}.csv", "models": "~/blip2", "deeper": f"/mnt{home}"}
    monkeypatch.chdir(data)
    assert staged_folder(".") == tmp_path / "data" / ".root.hub-upload"
    assert staged_folder("bench") == Path(".bench.hub-upload")


def test_a_copy_left_by_a_failed_push_is_not_read_back_as_data(tmp_path, face, monkeypatch):
    """Review 12 M1: `--out bench/a` then a failed push left `bench/a.hub-upload` (a second copy of a's rows)
    beside a; loading `bench` (ifas-eval --data bench, ifas-train --dataset bench) loaded a twice. The copy is
    now the hidden `.a.hub-upload`, and copies named the old way are skipped too."""
    import shutil

    import huggingface_hub

    from scf.schema import _local_configs, load_table

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineHfApi)
    for name, n in (("a", 2), ("b", 1)):
        for i in range(n):
            write_image(tmp_path / f"src-{name}/train/real/{i}.png", face)
    r = ingest("--source", "image-folder", "--root", str(tmp_path / "src-a"), "--out", str(tmp_path / "bench/a"),
               "--push-to-hub", "me/a")
    assert r.exit_code == 1 and f"hf upload --repo-type dataset --private me/a {tmp_path / 'bench/.a.hub-upload'} " \
        "(its copy without local paths; delete it afterwards)" in r.output.strip().splitlines()[-1]
    assert (tmp_path / "bench/.a.hub-upload/data").is_dir()  # what the message names is there
    assert ingest("--source", "image-folder", "--root", str(tmp_path / "src-b"), "--out",
                  str(tmp_path / "bench/b")).exit_code == 0
    shutil.copytree(tmp_path / "bench/.a.hub-upload", tmp_path / "bench/a.hub-upload")  # left by an older scf
    assert _local_configs(tmp_path / "bench") == ["a", "b"]
    table = load_table(str(tmp_path / "bench"))
    assert sorted(table["train"]["path"]) == ["train/real/0.png", "train/real/0.png", "train/real/1.png"]
    assert len(load_table(str(tmp_path / "bench/a"))["train"]) == 2  # each row once: a (2) + b (1)


def test_the_skip_log_upload_hides_absolute_paths_of_list_entries_outside_root(tmp_path, face):
    """Review 12 M2: a manifest row /mnt/<lab>/<user>/x.png outside --root is skipped with its path in the detail;
    the uploaded skipped.jsonl says <local>/x.png (a space in a folder name too), the local one keeps the path."""
    root, manifest, out = _project(tmp_path, face)
    nas = tmp_path / "lab nas" / "ana" / "shots"  # not under --root, nor under a recorded folder or the home
    write_image(nas / "c.png", face)
    manifest.write_text(manifest.read_text() + f"{nas / 'c.png'},0,train\n{nas / 'gone.png'},0,test\n")
    uploaded: dict[str, bytes] = {}

    def upload_folder(folder_path, **kw):
        folder = Path(folder_path)
        uploaded.update({str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()})

    with mock.patch("huggingface_hub.HfApi") as api_cls:
        api_cls.return_value.upload_folder.side_effect = upload_folder
        r = ingest("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(out),
                   "--push-to-hub", "me/fas")
    assert r.exit_code == 0, r.output
    local = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    sent = [json.loads(line) for line in uploaded["skipped.jsonl"].decode().splitlines()]
    assert [s["key"] for s in sent] == [s["key"] for s in local] and len(sent) == 3
    outside = [s["detail"] for s in sent if s["reason"] == "path outside --root"]
    assert outside == [f"<local>/{n} is not under <local>/captures: give --root a folder that holds every file of "
                       "the manifest" for n in ("c.png", "gone.png")]
    assert str(nas / "c.png") in json.dumps(local)  # the local log keeps the path: the user can find the row
    assert b"lab nas" not in uploaded["skipped.jsonl"] and b"ana" not in uploaded["skipped.jsonl"]


def test_redaction_catches_a_path_ending_a_sentence_and_file_uris_and_leaves_tokenizer_files_alone(
        tmp_path, monkeypatch):
    """Review 12 L4: '/path.' and 'file:///path' are redacted; vocab/tokenizer files of a pushed captioner are
    uploaded byte for byte (with HOME=/root a vocabulary entry "/root" used to become "~")."""
    from scf.hub import path_replacements, redact_absolute_paths, redact_text, stage_redacted

    monkeypatch.setattr(Path, "home", classmethod(lambda cls: Path("/root")))
    bench = tmp_path / "bench"
    bench.mkdir()
    reps = path_replacements([str(bench)])
    assert redact_text(f"written to {bench}.", reps) == "written to <local>/bench."
    assert redact_text(f"see file://{bench}/a.png, or {bench}.csv", reps) == \
        f"see file://<local>/bench/a.png, or {bench}.csv"
    assert redact_text(f"{bench}-old {bench}2 /mnt{bench}", reps) == f"{bench}-old {bench}2 /mnt{bench}"
    assert redact_absolute_paths("x /data/a b/c.png: y, file:///srv/d.png. https://hf.co/x <local>/e ~/f ../g") == \
        "x <local>/c.png: y, file://<local>/d.png. https://hf.co/x <local>/e ~/f ../g"

    captioner = tmp_path / "captioner"
    captioner.mkdir()
    vocab = json.dumps({"/root": 1, "root": 2, f"{bench}": 3}).encode()
    for name in ("vocab.json", "tokenizer.json", "tokenizer_config.json", "merges.txt", "special_tokens_map.json"):
        (captioner / name).write_bytes(vocab)
    (captioner / "scf_finetune.json").write_text(json.dumps({"captioner_general": "/root/models/blip2"}))
    (captioner / "config.json").write_text(json.dumps({"_name_or_path": f"{bench}/blip2"}))
    stage = stage_redacted(captioner, reps)
    assert stage == tmp_path / ".captioner.hub-upload"
    for name in ("vocab.json", "tokenizer.json", "tokenizer_config.json", "merges.txt", "special_tokens_map.json"):
        assert (stage / name).read_bytes() == vocab, name
    assert json.loads((stage / "scf_finetune.json").read_text()) == {"captioner_general": "~/models/blip2"}
    assert json.loads((stage / "config.json").read_text()) == {"_name_or_path": "<local>/bench/blip2"}
