"""A local stand-in for the Hugging Face Hub, for push -> pull tests without network.

``FakeHub.patch()`` replaces the ``HfApi`` methods that reach the Hub during an upload
(``create_repo``, ``create_branch``, ``create_commit``, ``_validate_yaml``) and turns the hf_xet upload
pipeline off, so that ``upload_folder`` takes its single-commit path through ``create_commit``.
Each commit is applied to a local "remote" tree per repo and branch, recorded, and republished
into the Hub cache layout (``models--org--name/{blobs,snapshots/<sha>,refs/<branch>}``) so that
``from_pretrained("org/name")`` and ``ModelCard.load("org/name")`` read it back with
``HF_HUB_OFFLINE=1``. Any other Hub call still fails (offline mode, loopback endpoint).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationCopy, CommitOperationDelete, HfApi, ModelCard


def repo_cache_dir(cache_dir: Path, repo_id: str) -> Path:
    """``$HF_HUB_CACHE/models--org--name``."""
    return Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))


def populate_hf_cache(tree: Path, repo_id: str, cache_dir: Path, revision_sha: str, branch: str = "main") -> Path:
    """Publish every file of ``tree`` as snapshot ``revision_sha`` of ``repo_id`` (blobs named by their
    sha256, snapshot entries are relative symlinks) and point ``refs/<branch>`` at it."""
    repo = repo_cache_dir(cache_dir, repo_id)
    snapshot = repo / "snapshots" / revision_sha
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        entry = snapshot / path.relative_to(tree)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.unlink(missing_ok=True)
        entry.symlink_to(os.path.relpath(blob, entry.parent))
    ref = repo / "refs" / branch
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(revision_sha)
    return snapshot


@dataclass
class Commit:
    """One recorded commit: repo, branch, message and ``(op, path_in_repo, nbytes)`` per operation."""

    repo_id: str
    branch: str
    message: str
    operations: list
    sha: str

    @property
    def paths(self) -> list[str]:
        return sorted(path for _, path, _ in self.operations)


@dataclass
class FakeHub:
    """Local remote trees under ``root``, published into ``cache_dir``; every call is recorded."""

    root: Path
    cache_dir: Path
    calls: list = field(default_factory=list)  # (method, repo_id, details) in call order
    commits: list = field(default_factory=list)
    repos: dict = field(default_factory=dict)  # repo_id -> {"private": bool}

    def tree(self, repo_id: str, branch: str = "main") -> Path:
        """The remote working tree of one branch."""
        return Path(self.root) / repo_id.replace("/", "--") / branch

    # ------------------------------------------------------------------ HfApi replacements
    def create_repo(self, api: HfApi, repo_id: str, *, private=None, exist_ok=False, repo_type=None, **kwargs):
        self.calls.append(("create_repo", repo_id, {"private": private, "exist_ok": exist_ok, "token": api.token}))
        if repo_id in self.repos and not exist_ok:
            raise FileExistsError(f"fake hub: repo {repo_id} exists")
        self.repos.setdefault(repo_id, {"private": bool(private)})
        self.tree(repo_id).mkdir(parents=True, exist_ok=True)
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, api: HfApi, repo_id: str, *, branch: str, revision=None, exist_ok=False, **kwargs):
        self.calls.append(("create_branch", repo_id, {"branch": branch, "exist_ok": exist_ok}))
        target = self.tree(repo_id, branch)
        if target.exists():
            if not exist_ok:
                raise FileExistsError(f"fake hub: branch {branch} exists")
            return
        shutil.copytree(self.tree(repo_id, revision or "main"), target)

    def validate_yaml(self, api: HfApi, content: str, *, repo_type=None, token=None):
        self.calls.append(("validate_yaml", None, {"bytes": len(content)}))
        ModelCard(content)  # raises on broken metadata, as the Hub would

    def create_commit(self, api: HfApi, repo_id: str, operations, *, commit_message: str, revision=None,
                      **kwargs) -> CommitInfo:
        branch = revision or "main"
        if repo_id not in self.repos:
            raise FileNotFoundError(f"fake hub: no repo {repo_id}")
        tree = self.tree(repo_id, branch)
        if not tree.exists():
            raise FileNotFoundError(f"fake hub: no branch {branch} in {repo_id}")
        recorded = []
        for op in operations:
            if isinstance(op, CommitOperationAdd):
                data = _read_source(op.path_or_fileobj)
                target = tree / op.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                recorded.append(("add", op.path_in_repo, len(data)))
            elif isinstance(op, CommitOperationDelete):
                target = tree / op.path_in_repo
                shutil.rmtree(target) if target.is_dir() else target.unlink()
                recorded.append(("delete", op.path_in_repo, 0))
            elif isinstance(op, CommitOperationCopy):
                data = (tree / op.src_path_in_repo).read_bytes()
                (tree / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
                (tree / op.path_in_repo).write_bytes(data)
                recorded.append(("copy", op.path_in_repo, len(data)))
            else:
                raise TypeError(f"fake hub: unknown operation {op!r}")
        digest = hashlib.sha1(f"{repo_id}@{branch}#{len(self.commits)}".encode())
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(tree)).encode() + path.read_bytes())
        sha = digest.hexdigest()
        populate_hf_cache(tree, repo_id, self.cache_dir, sha, branch=branch)
        self.commits.append(Commit(repo_id, branch, commit_message, recorded, sha))
        self.calls.append(("create_commit", repo_id, {"branch": branch, "message": commit_message,
                                                      "token": api.token}))
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{sha}",
                          commit_message=commit_message, commit_description="", oid=sha)

    # ------------------------------------------------------------------ patching
    @contextlib.contextmanager
    def patch(self):
        """Route HfApi's repo, branch, commit and YAML-validation calls to this fake."""
        def method(name):
            def call(api, *args, **kwargs):
                return getattr(self, name)(api, *args, **kwargs)
            return call

        with mock.patch.object(HfApi, "create_repo", method("create_repo")), \
                mock.patch.object(HfApi, "create_branch", method("create_branch")), \
                mock.patch.object(HfApi, "create_commit", method("create_commit")), \
                mock.patch.object(HfApi, "_validate_yaml", method("validate_yaml")), \
                mock.patch("huggingface_hub.hf_api.is_xet_available", lambda: False):
            yield self


def _read_source(source) -> bytes:
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    if isinstance(source, bytes):
        return source
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        return source.read()
    raise TypeError(f"fake hub: cannot read {source!r}")
