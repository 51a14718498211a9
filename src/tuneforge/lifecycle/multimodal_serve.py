"""The /predict and /explain endpoints of a served multimodal run: rows of typed columns instead of texts.

`create_app` registers these before its text endpoints when the run has a features section, so the same
paths take `{"rows": [{column: value, ...}]}` with the run's feature columns. Image and audio paths must be
readable by the server (absolute, or relative to its working folder).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

EXAMPLE = '{"rows": [{"review": "fits well", "age": 34, "department": "Tops"}]}'


class RowsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, Any]] = Field(..., min_length=1, description="Rows with the run's feature columns "
                                       "(at most the server's max batch).")


class RowPrediction(BaseModel):
    label: str | None = Field(None, description="Predicted class (classification).")
    score: float = Field(..., description="Probability of the predicted class, or the regression output.")
    probabilities: dict[str, float] | None = Field(None, description="Calibrated probability per class.")


class RowsPredictResponse(BaseModel):
    model: str
    version: str | None = None
    predictions: list[RowPrediction]


class RowExplanation(BaseModel):
    prediction: RowPrediction
    contributions: dict[str, float] = Field(..., description="Per modality: the prediction (predicted class's "
                                            "probability, or the score) minus the prediction without it.")


class RowsExplainResponse(BaseModel):
    model: str
    version: str | None = None
    explanations: list[RowExplanation]


def add_multimodal_routes(app: FastAPI, service: Any, settings: Any, errors: dict[int, Any]) -> None:
    """POST /predict and /explain over rows, sharing the service's model thread, limits and metrics."""
    from tuneforge.explain.modality import explain_encoded
    from tuneforge.lifecycle.serve import Refusal

    def check(rows: list[dict[str, Any]]) -> None:
        limit = settings.max_batch
        if len(rows) > limit:
            raise Refusal(413, f"{len(rows)} rows in one request; this server takes at most {limit}",
                          fix=f"split them into requests of at most {limit} rows (or restart the server with a "
                              "larger --max-batch)")

    @app.post("/predict", response_model=RowsPredictResponse, response_model_exclude_none=True, responses=errors)
    async def predict_rows(body: RowsRequest) -> dict[str, Any]:
        """Labels with probabilities (classification) or scores (regression), in the order of `rows`."""
        check(body.rows)
        loaded = service.model()
        rows = await service.on_model_thread(loaded.predictor.predict, body.rows, None, settings.batch_size)
        for row in rows:
            service.predictions.labels(label=row.get("label", "score")).inc()
        return {"model": service.name, "version": loaded.version, "predictions": rows}

    @app.post("/explain", response_model=RowsExplainResponse, response_model_exclude_none=True, responses=errors)
    async def explain_rows(body: RowsRequest) -> dict[str, Any]:
        """Each modality's contribution to each row's prediction, by ablation (explain/modality.py)."""
        check(body.rows)
        loaded = service.model()

        def run() -> list[Any]:
            return explain_encoded(loaded.predictor, loaded.predictor.encode(body.rows))

        results = await service.on_model_thread(run)
        return {"model": service.name, "version": loaded.version,
                "explanations": [{"prediction": r.prediction, "contributions": r.contributions} for r in results]}
