"""A local stand-in for the Hugging Face Hub, for push -> pull tests without network.

``FakeHub.patch()`` replaces the ``HfApi`` methods that reach the Hub during an upload
(``create_repo``, ``create_branch``, ``list_repo_files``, ``create_commit``, ``_validate_yaml``) and
turns the hf_xet upload pipeline off, so that ``upload_folder`` takes its single-commit path through
``create_commit``. Each commit is applied to a local "remote" tree per repo and branch, atomically
(a commit that fails leaves the tree as it was and records nothing, as on the Hub), recorded, and
republished into the Hub cache layout (``models--org--name/{blobs,snapshots/<sha>,refs/<branch>}``;
``datasets--org--name`` for ``repo_type="dataset"``) so that ``from_pretrained("org/name")``,
``ModelCard.load("org/name")`` and ``snapshot_download(..., repo_type="dataset")`` read it back with
``HF_HUB_OFFLINE=1``. Any other Hub call still fails (offline mode, loopback endpoint).

``FakeHub(..., publish=False)`` stands for the online Hub instead: commits stay in the remote trees,
and ``huggingface_hub.snapshot_download`` (patched) downloads the branch head into the cache first
(copying every file, as a first download would) and raises ``RepositoryNotFoundError`` for a repo it
does not have. ``fail_after_operations=n`` makes the next commits lose the connection after ``n``
operations (``ConnectionError``).
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

import httpx2
import huggingface_hub
from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    DatasetCard,
    HfApi,
    ModelCard,
    constants,
)
from huggingface_hub.errors import RepositoryNotFoundError

_REAL_SNAPSHOT_DOWNLOAD = huggingface_hub.snapshot_download


def repo_cache_dir(cache_dir: Path, repo_id: str, repo_type: str | None = None) -> Path:
    """``$HF_HUB_CACHE/models--org--name`` (``datasets--org--name`` for a dataset repo)."""
    return Path(cache_dir) / f"{repo_type or 'model'}s--{repo_id.replace('/', '--')}"


def populate_hf_cache(tree: Path, repo_id: str, cache_dir: Path, revision_sha: str, branch: str = "main",
                      repo_type: str | None = None) -> Path:
    """Publish every file of ``tree`` as snapshot ``revision_sha`` of ``repo_id`` (blobs named by their
    sha256, snapshot entries are relative symlinks) and point ``refs/<branch>`` at it."""
    repo = repo_cache_dir(cache_dir, repo_id, repo_type)
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
    repo_type: str = "model"

    @property
    def paths(self) -> list[str]:
        return sorted(path for _, path, _ in self.operations)


@dataclass
class FakeHub:
    """Local remote trees under ``root``, published into ``cache_dir``; every call is recorded.

    ``repos`` and the trees are per repo type: a model and a dataset may share a name, as on the Hub.
    Details of calls on a dataset repo carry ``"repo_type": "dataset"`` (model calls are unchanged).
    """

    root: Path
    cache_dir: Path
    calls: list = field(default_factory=list)  # (method, repo_id, details) in call order
    commits: list = field(default_factory=list)
    repos: dict = field(default_factory=dict)  # repo_id (model) or ("dataset", repo_id) -> {"private": bool}
    publish: bool = True  # False: the online Hub; snapshot_download fetches from the trees
    fail_after_operations: int | None = None  # a commit loses the connection after so many operations
    heads: dict = field(default_factory=dict)  # (repo_type, repo_id, branch) -> sha of the last commit

    def tree(self, repo_id: str, branch: str = "main", repo_type: str | None = None) -> Path:
        """The remote working tree of one branch."""
        prefix = "" if (repo_type or "model") == "model" else f"{repo_type}s--"
        return Path(self.root) / (prefix + repo_id.replace("/", "--")) / branch

    @staticmethod
    def _key(repo_id: str, repo_type: str | None):
        return repo_id if (repo_type or "model") == "model" else (repo_type, repo_id)

    @staticmethod
    def _details(repo_type: str | None, **details) -> dict:
        return details if (repo_type or "model") == "model" else {**details, "repo_type": repo_type}

    # ------------------------------------------------------------------ HfApi replacements
    def create_repo(self, api: HfApi, repo_id: str, *, private=None, exist_ok=False, repo_type=None, **kwargs):
        self.calls.append(("create_repo", repo_id, self._details(repo_type, private=private, exist_ok=exist_ok,
                                                                 token=api.token)))
        key = self._key(repo_id, repo_type)
        if key in self.repos and not exist_ok:
            raise FileExistsError(f"fake hub: repo {repo_id} exists")
        self.repos.setdefault(key, {"private": bool(private)})
        self.tree(repo_id, repo_type=repo_type).mkdir(parents=True, exist_ok=True)
        prefix = "" if (repo_type or "model") == "model" else f"{repo_type}s/"
        return f"https://huggingface.co/{prefix}{repo_id}"

    def create_branch(self, api: HfApi, repo_id: str, *, branch: str, revision=None, exist_ok=False, repo_type=None,
                      **kwargs):
        self.calls.append(("create_branch", repo_id, self._details(repo_type, branch=branch, exist_ok=exist_ok)))
        target = self.tree(repo_id, branch, repo_type)
        if target.exists():
            if not exist_ok:
                raise FileExistsError(f"fake hub: branch {branch} exists")
            return
        shutil.copytree(self.tree(repo_id, revision or "main", repo_type), target)

    def list_repo_files(self, api: HfApi, repo_id: str, *, revision=None, repo_type=None, **kwargs) -> list[str]:
        self.calls.append(("list_repo_files", repo_id, self._details(repo_type, revision=revision)))
        if self._key(repo_id, repo_type) not in self.repos:
            raise _not_found(repo_id, repo_type)
        tree = self.tree(repo_id, revision or "main", repo_type)
        return sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())

    def validate_yaml(self, api: HfApi, content: str, *, repo_type=None, token=None):
        self.calls.append(("validate_yaml", None, self._details(repo_type, bytes=len(content))))
        (DatasetCard if repo_type == "dataset" else ModelCard)(content)  # raises on broken metadata, as the Hub would

    def create_commit(self, api: HfApi, repo_id: str, operations, *, commit_message: str, revision=None,
                      repo_type=None, **kwargs) -> CommitInfo:
        branch = revision or "main"
        if self._key(repo_id, repo_type) not in self.repos:
            raise FileNotFoundError(f"fake hub: no repo {repo_id}")
        tree = self.tree(repo_id, branch, repo_type)
        if not tree.exists():
            raise FileNotFoundError(f"fake hub: no branch {branch} in {repo_id}")
        # a commit is atomic on the Hub: apply it to a hard-linked copy, swap it in when complete
        staging = tree.with_name(f".{branch}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(tree, staging, copy_function=os.link)
        try:
            recorded = self._apply(staging, operations)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        old = tree.with_name(f".{branch}.old")
        os.replace(tree, old)
        os.replace(staging, tree)
        shutil.rmtree(old)
        digest = hashlib.sha1(f"{repo_type}:{repo_id}@{branch}#{len(self.commits)}".encode())
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(tree)).encode() + path.read_bytes())
        sha = digest.hexdigest()
        if self.publish:
            populate_hf_cache(tree, repo_id, self.cache_dir, sha, branch=branch, repo_type=repo_type)
        self.heads[(repo_type or "model", repo_id, branch)] = sha
        self.commits.append(Commit(repo_id, branch, commit_message, recorded, sha, repo_type or "model"))
        self.calls.append(("create_commit", repo_id, self._details(repo_type, branch=branch, message=commit_message,
                                                                   token=api.token)))
        prefix = "" if (repo_type or "model") == "model" else f"{repo_type}s/"
        return CommitInfo(commit_url=f"https://huggingface.co/{prefix}{repo_id}/commit/{sha}",
                          commit_message=commit_message, commit_description="", oid=sha)

    def _apply(self, tree: Path, operations) -> list:
        recorded = []
        for op in operations:
            if self.fail_after_operations is not None and len(recorded) >= self.fail_after_operations:
                raise ConnectionError(f"fake hub: connection lost after {len(recorded)} operations")
            if isinstance(op, CommitOperationAdd):
                data = _read_source(op.path_or_fileobj)
                target = tree / op.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)  # a hard link to the previous tree: never write through it
                target.write_bytes(data)
                recorded.append(("add", op.path_in_repo, len(data)))
            elif isinstance(op, CommitOperationDelete):
                target = tree / op.path_in_repo
                shutil.rmtree(target) if target.is_dir() else target.unlink()
                recorded.append(("delete", op.path_in_repo, 0))
            elif isinstance(op, CommitOperationCopy):
                data = (tree / op.src_path_in_repo).read_bytes()
                (tree / op.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
                (tree / op.path_in_repo).unlink(missing_ok=True)
                (tree / op.path_in_repo).write_bytes(data)
                recorded.append(("copy", op.path_in_repo, len(data)))
            else:
                raise TypeError(f"fake hub: unknown operation {op!r}")
        return recorded

    def snapshot_download(self, repo_id: str, *, repo_type=None, revision=None, cache_dir=None, **kwargs) -> str:
        """The online Hub's download (``publish=False``): copy the branch head into the cache, then return
        the snapshot as huggingface_hub finds it there."""
        self.calls.append(("snapshot_download", repo_id, self._details(repo_type, revision=revision)))
        branch = revision or "main"
        sha = self.heads.get((repo_type or "model", repo_id, branch))
        if sha is None:
            raise _not_found(repo_id, repo_type)
        cache = Path(cache_dir or constants.HF_HUB_CACHE)
        snapshot = repo_cache_dir(cache, repo_id, repo_type) / "snapshots" / sha
        if not snapshot.is_dir():
            populate_hf_cache(self.tree(repo_id, branch, repo_type), repo_id, cache, sha, branch=branch,
                              repo_type=repo_type)
        return _REAL_SNAPSHOT_DOWNLOAD(repo_id, repo_type=repo_type, revision=revision, cache_dir=str(cache),
                                       local_files_only=True)

    # ------------------------------------------------------------------ patching
    @contextlib.contextmanager
    def patch(self):
        """Route HfApi's repo, branch, listing, commit and YAML-validation calls to this fake (and
        ``huggingface_hub.snapshot_download`` too when ``publish=False``)."""
        def method(name):
            def call(api, *args, **kwargs):
                return getattr(self, name)(api, *args, **kwargs)
            return call

        with contextlib.ExitStack() as stack:
            for name in ("create_repo", "create_branch", "list_repo_files", "create_commit"):
                stack.enter_context(mock.patch.object(HfApi, name, method(name)))
            stack.enter_context(mock.patch.object(HfApi, "_validate_yaml", method("validate_yaml")))
            stack.enter_context(mock.patch("huggingface_hub.hf_api.is_xet_available", lambda: False))
            if not self.publish:
                stack.enter_context(mock.patch.object(huggingface_hub, "snapshot_download", self.snapshot_download))
            yield self


def _not_found(repo_id: str, repo_type: str | None) -> RepositoryNotFoundError:
    prefix = "" if (repo_type or "model") == "model" else f"{repo_type}s/"
    url = f"https://huggingface.co/api/{prefix}{repo_id}"
    response = httpx2.Response(404, request=httpx2.Request("GET", url))
    return RepositoryNotFoundError(f"404 Client Error. Repository Not Found for url: {url}.", response=response)


def _read_source(source) -> bytes:
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    if isinstance(source, bytes):
        return source
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        return source.read()
    raise TypeError(f"fake hub: cannot read {source!r}")
