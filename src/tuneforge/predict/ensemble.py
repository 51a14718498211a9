"""An ensemble run directory loaded as a predictor: every member run loaded (and checked) like any run, then
combined by the rule in ensemble.json (`tuneforge.ensemble.predictor.EnsemblePredictor`)."""

from __future__ import annotations

from typing import Any

from tuneforge import kinds
from tuneforge.ensemble.predictor import ENSEMBLE_FILE, EnsemblePredictor, EnsembleSpec, member_path
from tuneforge.errors import TuneforgeError
from tuneforge.predict import checks
from tuneforge.predict.protocol import LoadRequest
from tuneforge.predict.registry import load, loads

REBUILD = "put the member run back, or rebuild the ensemble with `tuneforge ensemble`"


@loads(kinds.ENSEMBLE)
def load_ensemble(request: LoadRequest) -> EnsemblePredictor:
    root = request.root
    spec = EnsembleSpec.read(root / ENSEMBLE_FILE)
    members = []
    for written in spec.members:
        path = member_path(root, written)
        if not path.is_dir():
            raise TuneforgeError(f"member run '{written}' of the ensemble {root} is missing (looked in {path})",
                                 fix=REBUILD)
        members.append(load(path, request.device, trust_run_code=request.trust))
    check_members(root / ENSEMBLE_FILE, spec, members)
    predictor = EnsemblePredictor(members, spec, request.recipe)
    predictor.run_dir, predictor.trust = root, request.trust
    return predictor


def check_members(path: Any, spec: EnsembleSpec, members: list[Any]) -> None:
    """The members still fit the description: one weight each, and each has the ensemble's labels (their
    probability columns are matched by name)."""
    if not members:
        raise checks.RunDamaged(f"{path} lists no member runs", fix=REBUILD)
    if spec.weights is not None and len(spec.weights) != len(members):
        raise checks.RunDamaged(f"{path} has {len(spec.weights)} weights for {len(members)} members", fix=REBUILD)
    for written, member in zip(spec.members, members, strict=True):
        if sorted(member.labels or []) != sorted(spec.labels or []):
            raise checks.RunDamaged(f"member run '{written}' has the labels {', '.join(member.labels or [])}, but "
                                    f"{path} combines {', '.join(spec.labels or [])}", fix=REBUILD)
