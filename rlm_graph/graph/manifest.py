"""The run manifest: what a run is, written into its checkpoint when it starts.

A resume, a fork or a follow-up question reads it to carry the run on exactly as it began: the
root and sub-model (spec, base URL, label; never a key), the sandbox and its options, the limits,
the prompt and guard settings, the names of its tools, a digest of the prompt templates, the worker protocol version,
the rlm-graph version and the context's identity (path, size, SHA-256). Keys are read from the
environment (or given again) each time, as at the start.

An option given on a resume that contradicts the manifest is a *change*: refused in one line that
names it, unless the caller allows it; an allowed change is applied to the manifest and recorded
in its ``changes`` list (when, at which iteration, by what, old and new values).

Names are the options a user gives (``model``, ``base_url``, ``sandbox``, ``max_iterations`` ...,
``sandbox_options.isolation`` for one sandbox option), so a refusal reads like the flags typed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_graph.errors import ContextError
from rlm_graph.graph.settings import LIMIT_NAMES, Limits, RLMContext

if TYPE_CHECKING:
    from rlm_graph.graph.bindings import RunSettings

#: The manifest's own format version.
MANIFEST_VERSION = 1

#: Settings a manifest records and a resume compares (every RLMContext field but ``work_dir``,
#: which says where this process keeps files, not what the run is).
SETTING_NAMES = tuple(f for f in RLMContext.__dataclass_fields__ if f not in ("work_dir", "limits"))

#: What the model options are called in a refusal.
_MODEL_NAMES = ("model", "base_url", "sub_model", "sub_base_url", "model_label", "sub_model_label")


@dataclass(frozen=True)
class Change:
    """One option whose value differs from the manifest: ``name``, the recorded and the new value."""

    name: str
    old: Any
    new: Any

    def describe(self) -> str:
        return f"{self.name} {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    if _is_object(value):
        from rlm_graph.models import label_of

        return f"{type(value).__name__} {label_of(value)!r}"
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _is_object(value: Any) -> bool:
    """True for a chat model instance (what ``model=`` may be besides a spec string)."""
    return value is not None and not isinstance(value, (str, int, float, bool, dict, list, tuple))


def _json(value: Any) -> Any:
    """``value`` as it reads back from a checkpoint (tuples become lists)."""
    return json.loads(json.dumps(value))


def now() -> str:
    """The current time, ISO 8601 in UTC (the manifest's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A file's identity: its absolute path, size in bytes and SHA-256 (read in 1 MiB blocks)."""
    p = Path(path)
    digest = hashlib.sha256()
    size = 0
    with p.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"path": str(p.resolve()), "size": size, "sha256": digest.hexdigest()}


def prompts_digest() -> str:
    """SHA-256 over the prompt templates of :mod:`rlm_graph.graph.prompts` (every upper-case str or
    str list), so a resume can tell that the prompts changed since the run started."""
    from rlm_graph.graph import prompts

    parts = []
    for name in sorted(vars(prompts)):
        value = getattr(prompts, name)
        if name.isupper() and (isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))):
            parts.append(f"{name}={value!r}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _worker_digest() -> str:
    worker = Path(__file__).parents[1] / "sandboxes" / "worker.py"
    return hashlib.sha256(worker.read_bytes()).hexdigest()


def software() -> dict[str, Any]:
    """The versions a run records: rlm-graph, the worker protocol and script, the prompts."""
    from rlm_graph import __version__
    from rlm_graph.sandboxes.protocol import PROTOCOL_VERSION

    return {"rlm_graph": __version__, "protocol": PROTOCOL_VERSION, "worker_sha256": _worker_digest(), "prompts_sha256": prompts_digest()}


def build(ctx: RunSettings, *, limits: dict[str, Any], context: dict[str, Any], per_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a run starting with settings ``ctx``, ``limits`` and ``context`` (its identity).

    ``per_run`` are the limits the run's input set over the settings (``completion(limits=...)``,
    a served request's); the manifest keeps the value each replaced, so the RLM that started the
    run, given its own options again, carries it on without a change.

    The root model's spec is recorded as resolved: a run started with no model on a machine with
    ``OPENAI_API_KEY`` set records ``openai:gpt-4o-mini``, so its resume elsewhere does not fall
    back to another default. A chat model instance or a transport factory bound to the graph is
    recorded by its class and label; a resume must bind it again.
    """
    from rlm_graph.models import default_spec

    settings = {name: getattr(ctx.context, name) for name in SETTING_NAMES}
    bound = ctx.bindings
    root_bound = bound.model is not None and ctx.context.model == bound.base.model and ctx.context.base_url == bound.base.base_url
    sub_bound = bound.sub_model is not None and ctx.context.sub_model == bound.base.sub_model and ctx.context.sub_base_url == bound.base.sub_base_url
    if not root_bound and settings["model"] is None and settings["base_url"] is None:
        settings["model"] = default_spec()
    return _json(
        {
            "version": MANIFEST_VERSION,
            "started": now(),
            **software(),
            "settings": settings,
            "limits": dict(limits),
            "per_run_limits": {k: [ctx.limits.as_dict().get(k), v] for k, v in (per_run or {}).items()},
            "models": {
                "root": {"label": ctx.model_label, "object": type(bound.model).__name__ if root_bound else None},
                "sub": {"label": ctx.sub_label, "object": type(bound.sub_model).__name__ if sub_bound else None},
            },
            "tools": sorted(bound.tools),
            "context": context,
            "changes": [],
        }
    )


def recorded(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's options under the names a user gives them (limits flat, sandbox options dotted)."""
    out = {k: v for k, v in manifest.get("settings", {}).items() if k != "sandbox_options"}
    for key, value in (manifest.get("settings", {}).get("sandbox_options") or {}).items():
        out[f"sandbox_options.{key}"] = value
    out.update(manifest.get("limits") or {})
    if manifest.get("tools"):
        out["tools"] = manifest["tools"]
    return out


def requested_names(options: dict[str, Any]) -> dict[str, Any]:
    """Options given to a resume (RLM arguments or CLI flags, None = not given), named as in :func:`recorded`.

    A chat model instance or a transport factory stands for itself; :func:`differences` compares
    it with what the manifest recorded.
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "sandbox_options":
            out.update({f"sandbox_options.{k}": _json(v) for k, v in dict(value).items()})
        elif key == "sandbox" and callable(value):
            out["sandbox"] = "custom"
        elif key in ("model", "sub_model") and not isinstance(value, str):
            out[key] = value  # a chat model instance
        elif key == "tools":
            out["tools"] = sorted(value)  # their names
        elif key in SETTING_NAMES or key in LIMIT_NAMES:
            out[key] = _json(value)
    return out


def differences(manifest: dict[str, Any], requested: dict[str, Any]) -> list[Change]:
    """The requested options that contradict the manifest, in a stable order."""
    have = recorded(manifest)
    models = manifest.get("models") or {}
    changes = []
    for name in sorted(requested, key=_order):
        new = requested[name]
        if name in ("model", "sub_model") and not isinstance(new, str):
            from rlm_graph.models import label_of

            was = models.get("root" if name == "model" else "sub") or {}
            if not was.get("object") or was.get("label") != label_of(new):
                changes.append(Change(name, _described(was, have.get(name)), new))
            continue
        old = have.get(name)
        if name in LIMIT_NAMES and old is None and name not in (manifest.get("limits") or {}):
            old = Limits().as_dict()[name]
        overridden = (manifest.get("per_run_limits") or {}).get(name)
        if overridden is not None and new == overridden[0]:
            continue  # the starting RLM's own value, which this run's input replaced
        if old != new:
            changes.append(Change(name, old, new))
    return changes


def _described(model: dict[str, Any], spec: Any) -> Any:
    if model.get("object"):
        return f"{model['object']} {model.get('label')!r}"
    return spec


def _order(name: str) -> tuple[int, str]:
    if name in _MODEL_NAMES:
        return 0, str(_MODEL_NAMES.index(name))
    if name.startswith("sandbox") or name == "tools":
        return 1, name
    if name in LIMIT_NAMES:
        return 2, str(LIMIT_NAMES.index(name))
    return 3, name


def refusal(thread_id: str, changes: list[Change]) -> str:
    """The one line that refuses ``changes`` on ``thread_id``."""
    listed = "; ".join(c.describe() for c in changes)
    return (
        f"run {thread_id!r} was started with other settings than given here ({listed}; recorded -> given): "
        "add --allow-change (allow_change=True) to carry it on with the change, or leave the option out"
    )


def missing_object(thread_id: str, manifest: dict[str, Any], requested: dict[str, Any]) -> str | None:
    """Why the run cannot go on in this process: it was started with a chat model object or a
    transport factory that is not given again (None when nothing is missing)."""
    models = manifest.get("models") or {}
    for name, role in (("model", "root"), ("sub_model", "sub")):
        was = models.get(role) or {}
        if was.get("object") and name not in requested:
            return (
                f"run {thread_id!r} was started with a chat model object ({was['object']} {was.get('label')!r}) as its {name}, "
                f"which a checkpoint cannot hold: pass it again, RLM({name}=...).resume({thread_id!r})"
            )
    if manifest.get("tools") and "tools" not in requested:
        return f"run {thread_id!r} was started with tools ({', '.join(manifest['tools'])}): give the same again, --tools MODULE:ATTR (tools=...)"
    if (manifest.get("settings") or {}).get("sandbox") == "custom" and "sandbox" not in requested:
        return f"run {thread_id!r} was started with a transport factory as its sandbox: pass it again, RLM(sandbox=...).resume({thread_id!r})"
    return None


def apply(manifest: dict[str, Any], changes: list[Change], *, how: str, iteration: int, **detail: Any) -> dict[str, Any]:
    """A copy of ``manifest`` with ``changes`` applied and one entry appended to its ``changes`` list.

    ``how`` says what made the change ("resume", "fork", "ask"); ``detail`` adds to the entry
    (a fork's source thread and iteration, a moved context's old path).
    """
    out = _json(manifest)
    for change in changes:
        value = change.new
        if _is_object(value):
            from rlm_graph.models import label_of

            out["settings"][change.name] = None
            out["models"]["root" if change.name == "model" else "sub"] = {"label": label_of(value), "object": type(value).__name__}
            continue
        if change.name == "tools":
            out["tools"] = value
        elif change.name in LIMIT_NAMES:
            out.setdefault("limits", {})[change.name] = value
            (out.get("per_run_limits") or {}).pop(change.name, None)  # now the run's own, as given
        elif change.name.startswith("sandbox_options."):
            out["settings"].setdefault("sandbox_options", {})[change.name.split(".", 1)[1]] = value
        else:
            out["settings"][change.name] = value
            if change.name in ("model", "base_url"):
                out["models"]["root"] = {"label": None, "object": None}
            if change.name in ("sub_model", "sub_base_url") or (change.name in ("model", "base_url") and not out["settings"].get("sub_model")):
                out["models"]["sub"] = {"label": None, "object": None}
    entry = {"time": now(), "how": how, "iteration": iteration, "changed": {c.name: [_recordable(c.old), _recordable(c.new)] for c in changes}, **detail}
    out.setdefault("changes", []).append(_json(entry))
    return out


def _recordable(value: Any) -> Any:
    return _show(value) if _is_object(value) else _json(value)


def settings_of(manifest: dict[str, Any], *, work_dir: str) -> RLMContext:
    """The run settings a manifest describes, for a graph that carries the run on."""
    settings = dict(manifest.get("settings") or {})
    return RLMContext(**{k: v for k, v in settings.items() if k in SETTING_NAMES}, limits=Limits.from_dict(manifest.get("limits")), work_dir=work_dir)


def check_context(thread_id: str, manifest: dict[str, Any], new_path: str | os.PathLike[str] | None) -> str | None:
    """Check the context a resume will load; return its new path when it moved (else None).

    With ``new_path``: accepted when its SHA-256 matches the manifest's. Without: the recorded
    file must still be there with the same size and SHA-256.

    Raises:
        ContextError: the file is missing, or is not the run's context, in one line.
    """
    from rlm_graph.contexts import check_file

    want = manifest.get("context") or {}
    if not want.get("sha256"):
        if new_path is not None:
            raise ContextError(f"run {thread_id!r} recorded no context identity, so a moved context cannot be checked")
        return None
    if new_path is None:
        recorded_path = Path(want["path"])
        if not recorded_path.is_file():
            raise ContextError(
                f"run {thread_id!r} loads its context from {want['path']}, which is not there; "
                f"give its new place with --context NEWPATH (context=...): a file with SHA-256 {want['sha256'][:16]}..."
            )
        have = file_identity(recorded_path) if recorded_path.stat().st_size == want.get("size") else {"sha256": None}
        if have["sha256"] != want["sha256"]:
            raise ContextError(
                f"the context file of run {thread_id!r}, {want['path']}, has changed since the run started "
                f"(SHA-256 {want['sha256'][:16]}... recorded); restore it, or give a copy of the original with --context NEWPATH"
            )
        return None
    path = check_file(new_path)
    have = file_identity(path)
    if have["sha256"] != want["sha256"]:
        raise ContextError(
            f"{path} is not the context of run {thread_id!r}: its SHA-256 is {have['sha256'][:16]}..., "
            f"the run's is {want['sha256'][:16]}... ({want.get('size')} bytes, from {want['path']})"
        )
    return str(path) if str(path) != want["path"] else None


def software_notes(thread_id: str, manifest: dict[str, Any]) -> list[str]:
    """Lines saying what changed in the software since the run started (a newer rlm-graph, other
    prompts or another worker protocol); the run is carried on all the same."""
    now_ = software()
    notes = []
    names = {"rlm_graph": "rlm-graph", "protocol": "the worker protocol", "worker_sha256": "the worker script", "prompts_sha256": "the prompts"}
    for key, label in names.items():
        was = manifest.get(key)
        if was is not None and was != now_[key]:
            shown = (str(was)[:12], str(now_[key])[:12])
            notes.append(f"run {thread_id!r} was started with {label} {shown[0]}, this is {shown[1]}")
    return notes
