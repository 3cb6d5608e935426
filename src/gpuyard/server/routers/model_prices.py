"""The operator's prices of models' tokens (cents per million input and output tokens)."""

from __future__ import annotations

from fastapi import APIRouter

from gpuyard.server.deps import ClockDep, Operator, PricesChanged, Session
from gpuyard.server.schemas.billing import ModelPriceOut, ModelPriceSet
from gpuyard.server.schemas.common import errors
from gpuyard.server.services import token_charges

router = APIRouter(prefix="/v1/admin/model-prices", tags=["operator: billing"])


@router.get("", response_model=list[ModelPriceOut], responses=errors(403))
async def list_model_prices(principal: Operator, session: Session) -> list[ModelPriceOut]:
    return [ModelPriceOut.of(p) for p in await token_charges.list_prices(session)]


@router.put("", response_model=ModelPriceOut, responses=errors(400, 403))
async def set_model_price(
    body: ModelPriceSet,
    principal: Operator,
    session: Session,
    clock: ClockDep,
    changed: PricesChanged,
) -> ModelPriceOut:
    """Set a model's prices; requests to it are then held and charged by the token (and text
    to speech by the character)."""
    price = await token_charges.set_price(
        session,
        clock=clock,
        model=body.model,
        input_cents=body.cents_per_million_input,
        output_cents=body.cents_per_million_output,
        character_cents=body.cents_per_million_characters,
    )
    changed()
    return ModelPriceOut.of(price)


@router.delete("/{model:path}", status_code=204, responses=errors(403, 404))
async def delete_model_price(
    model: str, principal: Operator, session: Session, changed: PricesChanged
) -> None:
    """Stop charging the model by the token."""
    await token_charges.delete_price(session, model=model)
    changed()
