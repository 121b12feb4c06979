"""The Hub round trip with a REAL result, and `clio-hf annotate ... --push-to-hub` against the local Hub server.

The real result is conftest's `real_result_dir` (SmolLM2-135M + MiniLM on ShareGPT rows, computed once and cached).
Hub clients run in subprocesses because `huggingface_hub` and `datasets` read HF_ENDPOINT at import time; the server
is tests/hub_server.py on loopback, never the real Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clio_hf.result import ClioResult
from hub_fixtures import hub_env, hub_server, run_hub_client  # noqa: F401  (fixtures are found by name)

ROOT = Path(__file__).resolve().parents[1]

# Rows compare with NaN == NaN (a node with no parsable numeric value may carry a NaN mean).
SAME = """
import math
def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
def same_rows(got, want, what):
    assert got.features == want.features, (what, got.features, want.features)
    assert len(got) == len(want), (what, len(got), len(want))
    for i, (x, y) in enumerate(zip(got, want, strict=True)):
        assert same(x, y), f"{what} row {i} differs: {x} != {y}"
"""

ROUND_TRIP = SAME + """
import json, sys, datasets
from clio_hf.result import ClioResult
folder, repo, public_folder = sys.argv[1], sys.argv[2], sys.argv[3]
local = ClioResult.load(folder)
public = local.for_publishing(include_text=True)
public.save_to_disk(public_folder)
first = local.push_to_hub(repo, include_text=True)
again = local.push_to_hub(repo, include_text=True)  # the same result again: no new commit
rows = datasets.load_dataset(repo, split="train")
tree = datasets.load_dataset(repo, "hierarchy", split="train")
same_rows(rows, public.data, "default")
same_rows(tree, public.hierarchy, "hierarchy")
assert 0 < len(public.hierarchy) < len(local.hierarchy) and all(public.hierarchy["published"])
remote = ClioResult.from_hub(repo)
same_rows(remote.data, public.data, "from_hub data")
same_rows(remote.hierarchy, public.hierarchy, "from_hub hierarchy")
assert remote.info.pop("files")["data"]["rows"] == len(public.data)  # the shard record a load checks
assert remote.info == json.loads(json.dumps(public.info))
print(json.dumps({"first": first, "again": again, "rows": len(rows), "nodes": len(tree),
                  "facets": sorted(set(tree["facet"]))}))
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_real_result_push_then_load_dataset(hub_server, hub_env, real_result_dir, tmp_path):
    out = run_hub_client(ROUND_TRIP, hub_env, str(real_result_dir), "me/clio-run", str(tmp_path / "public"), timeout=300).stdout
    got = json.loads(out.strip().splitlines()[-1])
    commits = hub_server.commits("me/clio-run")
    assert len(commits) == 2  # the repo's initial commit, then the result in one commit; the re-push made none
    assert got["first"] == got["again"] == f"{hub_server.url}/datasets/me/clio-run/commit/{commits[-1]['oid']}"
    # which facets keep published nodes is the small auditor's call; the round trip needs some
    assert got["rows"] > 0 and got["nodes"] > 0 and got["facets"] and set(got["facets"]) <= {"request", "task"}
    remote = hub_server.files("me/clio-run")
    assert remote.pop(".gitattributes")
    # the pushed files are `for_publishing` saved to a folder, byte for byte (README card included)
    assert remote == {k: v for k, v in _files(tmp_path / "public").items() if not k.startswith(".")}


ROWS = [
    {"id": "en", "messages": [{"role": "user", "content": "How do I bake a loaf of sourdough bread at home?"},
                              {"role": "assistant", "content": "Start with an active starter."}]},
    {"id": "fr", "messages": [{"role": "user", "content": "Comment puis-je traduire ce contrat en anglais, s'il vous "
                                                          "plaît ? Je dois le rendre demain matin."},
                              {"role": "assistant", "content": "Bien sûr, envoyez-le moi."}]},
    {"id": "de", "messages": [{"role": "user", "content": "Wie kann ich meinen Fahrradreifen am besten reparieren, "
                                                          "wenn der Schlauch ein kleines Loch hat?"},
                              {"role": "assistant", "content": "Zuerst das Loch im Schlauch finden."}]},
]

CHECK_PUSHED = SAME + """
import json, sys, datasets
from clio_hf.result import ClioResult
repo, out_dir = sys.argv[1], sys.argv[2]
rows = datasets.load_dataset(repo, split="train")
tree = datasets.load_dataset(repo, "hierarchy", split="train") if sys.argv[3] == "tree" else None
local = ClioResult.load(out_dir)  # the same run, saved with --out beside the push
public = local.for_publishing()  # what the push publishes: no raw text, withheld nodes left out
assert "conversation" in local.data.column_names and "conversation" not in rows.column_names
same_rows(rows, public.data, "default")
if tree is not None:
    same_rows(tree, public.hierarchy, "hierarchy")
print(json.dumps({"ids": list(rows["id"]), "language": list(rows["language"]), "columns": rows.column_names,
                  "nodes": None if tree is None else len(tree), "info": ClioResult.load(repo).info}))
"""


CLI = "import sys; from clio_hf.cli import main; sys.exit(main(sys.argv[1:]))"  # what the `clio-hf` script runs


def _write_rows(path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


def _cli_env(hub_env: dict, tmp_path: Path) -> dict:
    return dict(hub_env, CLIO_HF_CACHE=str(tmp_path / "cache"),
                PYTHONPATH=f"{ROOT}:{hub_env['PYTHONPATH']}")  # clio_hf from this checkout, installed or not


def test_cli_annotate_language_only_pushes_to_hub(hub_server, hub_env, tmp_path):
    """`--facets language` needs no model (py3langid), so the whole command runs in seconds."""
    source, env = _write_rows(tmp_path / "rows.jsonl"), _cli_env(hub_env, tmp_path)
    proc = run_hub_client(CLI, env, "annotate", str(source), "--facets", "language", "--out", str(tmp_path / "out"),
                          "--push-to-hub", "me/cli-language", "--cache-dir", str(tmp_path / "runs"), check=False)
    assert proc.returncode == 0, f"clio-hf annotate failed:\n{proc.stdout}\n{proc.stderr}"
    assert len(hub_server.commits("me/cli-language")) == 2
    got = json.loads(run_hub_client(CHECK_PUSHED, env, "me/cli-language", str(tmp_path / "out"), "none")
                     .stdout.strip().splitlines()[-1])
    assert got["ids"] == ["en", "fr", "de"]
    assert [v.split(",")[0].strip().lower() for v in got["language"]] == ["english", "french", "german"]
    assert got["info"]["facets"][0]["name"].lower() == "language" and got["info"]["llm"] is None


# The CLI with a clustered facet, so the pushed repo also has a hierarchy. The models are the test doubles of
# tests/fakes.py (patched in where the pipeline loads models): this checks the command's plumbing, not the models.
CLI_WITH_FAKES = """
import sys
import clio_hf.pipeline as pipeline
from clio_hf.cli import main
from fakes import HashEmbedder, ScriptedLLM
pipeline.load_llm = lambda spec: ScriptedLLM()
pipeline.load_embedder = lambda spec: HashEmbedder()
sys.exit(main(sys.argv[1:]))
"""


def test_cli_annotate_push_to_hub_with_a_clustered_facet(hub_server, hub_env, tmp_path):
    source, env = _write_rows(tmp_path / "rows.jsonl"), _cli_env(hub_env, tmp_path)
    # three rows: every node is smaller than the default 5-row gate, and the scripted LLM is no auditor
    proc = run_hub_client(CLI_WITH_FAKES, env, "annotate", str(source), "--facets", "request,language",
                          "--out", str(tmp_path / "out"), "--push-to-hub", "me/cli-run", "--min-rows", "1", "--no-audit",
                          "--allow-names", "Ada Lovelace, Alan Turing", "--cache-dir", str(tmp_path / "runs"), timeout=300)
    assert "request:" in proc.stdout  # the CLI prints the top of each tree
    gates = ClioResult.load(tmp_path / "out").info["config"]["privacy"]
    assert gates["allowed_names"] == ["Ada Lovelace", "Alan Turing"] and gates["detect_pii"] and not gates["audit"]
    commits = hub_server.commits("me/cli-run")
    assert len(commits) == 2 and commits[-1]["title"].startswith("Upload clio_hf result (3 rows)")
    remote = hub_server.files("me/cli-run")
    ClioResult.load(tmp_path / "out").for_publishing().save_to_disk(tmp_path / "public")
    assert remote.pop(".gitattributes") and remote == _files(tmp_path / "public")  # --out and the push agree
    got = json.loads(run_hub_client(CHECK_PUSHED, env, "me/cli-run", str(tmp_path / "out"), "tree")
                     .stdout.strip().splitlines()[-1])
    assert got["ids"] == ["en", "fr", "de"] and got["nodes"] >= 1
    assert {"request", "request_cluster", "language"} <= set(got["columns"])
    assert not {"conversation", "messages", "request_embedding"} & set(got["columns"])  # it mixes in the user's words
    assert got["info"]["llm"] == "scripted-llm"


UPLOAD_ROWS = """
import sys
from huggingface_hub import HfApi
api = HfApi()
api.create_repo(sys.argv[1], repo_type="dataset", exist_ok=True)
api.upload_file(path_or_fileobj=sys.argv[2].encode(), path_in_repo="rows.jsonl", repo_id=sys.argv[1], repo_type="dataset")
print(api.dataset_info(sys.argv[1]).sha)
"""


def test_a_hub_source_is_keyed_by_its_commit(hub_server, hub_env, tmp_path):
    """After the dataset changes on the Hub a rerun reads the new commit; --revision reads an old one again."""
    env = _cli_env(hub_env, tmp_path)
    cache = ["--cache-dir", str(tmp_path / "runs")]

    def upload(rows: list[dict]) -> str:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return run_hub_client(UPLOAD_ROWS, env, "me/source", text).stdout.strip().splitlines()[-1]

    def annotate(out: str, *extra: str) -> ClioResult:
        proc = run_hub_client(CLI, env, "annotate", "me/source", "--facets", "language", "--out", str(tmp_path / out),
                              *cache, *extra, check=False)
        assert proc.returncode == 0, proc.stderr
        return ClioResult.load(tmp_path / out)

    first = upload(ROWS)
    assert annotate("one").info["source_revision"] == first
    second = upload(ROWS[:2])
    assert second != first
    now = annotate("two")
    assert now.data["id"] == ["en", "fr"] and now.info["source_revision"] == second
    again = annotate("three", "--revision", first)
    assert again.data["id"] == ["en", "fr", "de"] and again.info["source_revision"] == first
    assert f"| source revision | {first} |" in (tmp_path / "three" / "README.md").read_text()
    proc = run_hub_client(CLI, env, "annotate", "me/source", "--facets", "language", "--out", str(tmp_path / "four"),
                          "--revision", "no-such-branch", *cache, check=False)
    assert proc.returncode == 2 and "has no revision 'no-such-branch'" in proc.stderr
    # a private or gated dataset answers as a missing one does without a token: say how to log in
    proc = run_hub_client(CLI, env, "annotate", "me/not-visible", "--facets", "language", "--out", str(tmp_path / "five"),
                          *cache, check=False)
    assert proc.returncode == 2 and "hf auth login" in proc.stderr and "HF_TOKEN" in proc.stderr, proc.stderr


def test_a_push_is_checked_before_the_work_and_a_failed_push_says_how_to_retry(hub_server, hub_env, tmp_path):
    source, env = _write_rows(tmp_path / "rows.jsonl"), _cli_env(hub_env, tmp_path)
    annotate = ["annotate", str(source), "--facets", "language", "--cache-dir", str(tmp_path / "runs")]
    unreachable = dict(env, HF_ENDPOINT="http://127.0.0.1:9")
    proc = run_hub_client(CLI, unreachable, *annotate, "--push-to-hub", "me/retry", check=False)
    assert proc.returncode == 2 and "Cannot push to 'me/retry' on http://127.0.0.1:9" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran
    proc = run_hub_client(CLI, env, *annotate, "--push-to-hub", "me/a/b", check=False)
    assert proc.returncode == 2 and "not a valid repo id" in proc.stderr

    hub_server.fail_next_commits(100)
    try:
        proc = run_hub_client(CLI, env, *annotate, "--push-to-hub", "me/retry", "--include-text", check=False)
    finally:
        hub_server.fail_next_commits(0)
    saved = tmp_path / "cache" / "unpushed" / "me--retry"
    assert proc.returncode == 2, proc.stderr
    assert f"Pushing to 'me/retry' on {hub_server.url} failed" in proc.stderr
    assert f"The result is saved in {saved}; push it alone with: clio-hf push {saved} me/retry --include-text" in proc.stderr
    assert ClioResult.load(saved).data["id"] == ["en", "fr", "de"]
    proc = run_hub_client(CLI, env, "push", str(saved), "me/retry", "--include-text", check=False)
    assert proc.returncode == 0, proc.stderr
    ClioResult.load(saved).for_publishing(include_text=True).save_to_disk(tmp_path / "public")
    remote = hub_server.files("me/retry")
    assert remote.pop(".gitattributes") and remote == _files(tmp_path / "public")
