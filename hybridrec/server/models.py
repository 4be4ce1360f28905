"""Request and response bodies of the HTTP API (they are its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
)

from hybridrec.adaptive import (
    MAX_REFRESH_SECONDS,
    MIN_REFRESH_SECONDS,
    check_refresh_seconds,
)

MAX_CANDIDATES = 2000
MAX_FEEDBACK_BATCH = 1000
#: Request bodies above this many bytes are refused with 413 (the largest valid bodies,
#: 2,000 candidates or 1,000 feedback events of 256-character ids, fit well below it).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: An id: 1 to 256 characters, not blank, no control characters (NUL, CR, LF...).
Id = Annotated[StrictStr, Field(min_length=1, max_length=256,
                                pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
                                description="1 to 256 characters, not blank, without "
                                "control characters.")]
#: The largest event value accepted (in absolute value).
MAX_EVENT_VALUE = 1000.0

K_RULE = ("How many items: an integer between 1 and the scenario's `max_k` (listed by "
          "`GET /v1/scenarios`; 100 for the built-in scenarios). Defaults to the scenario's "
          "`default_k`.")


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Id
    scenario: Annotated[Id, Field(description="A scenario the bundle serves (`GET "
                                  "/v1/scenarios`); the built-in ones are `shop`, `video` "
                                  "and `ads`.", examples=["shop", "video", "ads"])]
    # Checked by the server against the scenario (one rule, one message for every bad value),
    # so the model takes anything here and the schema says what is expected.
    k: Any = Field(default=None, description=K_RULE, json_schema_extra={
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]})
    context: dict[str, Any] | None = Field(
        default=None, description="Free-form request context (device, page, ...). "
        "`recent_items`: item ids the user just interacted with, used like history.")
    candidates: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_CANDIDATES,
                                        description="Rank these items instead of retrieving "
                                        "candidates; ids unknown to the scenario are reported.")
    exclude_seen: StrictBool = Field(default=True, description="Leave out items the user "
                                     "already interacted with in this scenario.")
    explain: StrictBool = Field(default=False, description="Add to each item what moved the "
                                "scores of the scorers that can say (the ctr scorer's top "
                                "feature contributions, say).")


class RecommendedItem(BaseModel):
    item_id: str
    score: float | None = Field(description=(
        "The blender's ranking score. It orders this list and is comparable only within one "
        "response: blenders work on each scorer's scores standardised over the request's "
        "candidates. Null if no score was finite."))
    scores: dict[str, float | None] = Field(description="Per scorer and task, `scorer.task`, "
                                            "as the scorer returned it; null where the scorer "
                                            "has no opinion.")
    explanation: dict[str, Any] | None = Field(
        default=None, description="With `explain`: per scorer that explains, what moved "
        "this item's score. Null otherwise.")
    contributions: dict[str, float | None] | None = Field(
        default=None, description="Each blend input's share of `score`: per `scorer.task`, "
        "its (weighted, standardised) contribution, and any context the blender reads "
        "(`item popularity`, `item age`, `objective value`); they sum to `score` up to a "
        "constant of the response. Null where the blender cannot say.")


class Decision(BaseModel):
    policy: str = Field(description="`adaptive` when the blend adapts to feedback, "
                        "`adaptive-frozen` when adaptation is frozen, else the blender's name.")
    arm: str = Field(description="The way of blending drawn: `offline` (the bundle's "
                     "weights), `toward:SCORER.TASK`, or `fixed` for a blender without "
                     "randomness.")
    propensity: float = Field(description="The probability of the arm drawn, and so of "
                              "this list.")
    probabilities: dict[str, float] = Field(description="Every arm's probability; they sum "
                                            "to 1.")
    context: dict[str, str] = Field(description="What the draw depended on (`activity`).")
    positions: list[float] = Field(description="Per item, the probability that it would "
                                   "have been shown at its position.")


class DegradedPart(BaseModel):
    component: str = Field(description="What is missing from the answer: `scorer 'NAME'`, "
                           "`blender 'NAME'`, `online features` or `feedback log`.")
    reason: str = Field(description="Why: raised, wrong shape, past its time budget, left "
                        "out by its circuit breaker, unreachable...")


class RecommendResponse(BaseModel):
    request_id: str = Field(description="Refer to it in feedback.")
    user_id: str
    scenario: str
    bundle_version: str
    cold_start: bool = Field(description="Nothing was known of the user: the scenario's "
                             "fallback ranked alone.")
    fallback: str | None = Field(description="The component that ranked a cold start.")
    items: list[RecommendedItem]
    unknown_candidates: list[str]
    decision: Decision | None = Field(default=None, description="How the blend was "
                                      "decided, as logged for off-policy evaluation (a cold "
                                      "start's fallback ranking: arm `fixed`, probability 1).")
    degraded: list[DegradedPart] = Field(default_factory=list, description="What was left "
                                         "out of this answer and why; empty when nothing "
                                         "was. The answer is still ranked by the rest.")


class SimilarItem(BaseModel):
    item_id: str
    similarity: float


class SimilarResponse(BaseModel):
    item_id: str
    scenario: str
    source: str = Field(description="The component whose similarity answered.")
    bundle_version: str
    items: list[SimilarItem]


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Id
    item_id: Id
    event_type: Id
    user_id: Id | None = Field(default=None, description="Must match the request's user.")
    value: float = Field(default=1.0, ge=-MAX_EVENT_VALUE, le=MAX_EVENT_VALUE,
                         allow_inf_nan=False, description="Event strength (a rating, a "
                         "watch fraction); 1.0 when omitted.")
    timestamp: datetime | None = Field(
        default=None, strict=False,
        description="When it happened (ISO 8601 with a zone); the receive time when omitted. "
        "Not before the data the serving bundle was trained on, nor more than 5 minutes "
        "ahead of the server's clock.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[Any] = Field(min_length=1, max_length=MAX_FEEDBACK_BATCH,
                              description="Events, each a FeedbackEvent, validated on its "
                              "own: invalid ones are rejected by index. An event must name "
                              "an item of that response, once per event type.",
                              json_schema_extra={"items": FeedbackEvent.model_json_schema()})


class Rejected(BaseModel):
    index: int
    errors: list[str]


class FeedbackResponse(BaseModel):
    accepted: int
    rejected: list[Rejected]


def _whole(value: Any) -> Any:
    """A JSON number with nothing after the point (``5000.0``) is an integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _refresh(value: float | None) -> float | None:
    return None if value is None else check_refresh_seconds(value)


class PolicyControl(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    exploration: float | None = Field(default=None, ge=0.0, le=1.0, description=(
        "The most probability given to arms other than the best so far."))
    adapt: StrictBool | None = Field(default=None, description="false freezes the "
                                     "scenario's blend on its best arm; true resumes.")
    window: Annotated[int | None, BeforeValidator(_whole)] = Field(
        default=None, ge=1, le=100_000, description=(
        "How many of the latest lists the policy learns from."))
    refresh_seconds: Annotated[float | None, AfterValidator(_refresh)] = Field(
        default=None, ge=0.0, le=MAX_REFRESH_SECONDS, description=(
            f"How often each server process re-reads the policy's state: 0 (before every "
            f"decision, so each draw follows every update before it) or from "
            f"{MIN_REFRESH_SECONDS:g} to {MAX_REFRESH_SECONDS:g} seconds."))
