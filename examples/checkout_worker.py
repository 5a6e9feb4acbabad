"""A typed worker: ``checkout`` takes a pydantic ``Cart`` and returns an ``Invoice``.

Every value crossing the journal has a declared type, and comes back as that type, the first time
and on every replay:

1. ``price`` (a step) returns a ``Quote`` model;
2. ``reserve`` (a child run, started with the function itself) takes a ``Reservation`` and
   returns a ``Reserved`` model;
3. the ``confirm`` signal's payload is a ``Confirmation`` dataclass;
4. the result is an ``Invoice`` model.

A cart that does not fit ``Cart`` fails the run at once with ``ConversionError`` naming the
workflow, the field and the type. Run it next to ``trine --target=all``::

    python examples/checkout_worker.py

and start a run from Python with ``trine.Client().start(checkout, Cart(...))``, or over HTTP with
``{"function": "checkout", "input": {"customer": "c-1", "lines": [{"sku": "A1", "qty": 2}]}}``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal

import pydantic

import trine

worker = trine.Worker()

PRICES = {"A1": Decimal("9.50"), "B7": Decimal("4.25")}


class Line(pydantic.BaseModel):
    sku: str
    qty: int = pydantic.Field(gt=0)


class Cart(pydantic.BaseModel):
    customer: str
    lines: list[Line]


class Quote(pydantic.BaseModel):
    total: Decimal
    quoted_at: datetime


class Reservation(pydantic.BaseModel):
    skus: list[str]


class Reserved(pydantic.BaseModel):
    hold_id: str
    skus: list[str]


@dataclasses.dataclass
class Confirmation:
    by: str
    note: str = ""


class Invoice(pydantic.BaseModel):
    customer: str
    total: Decimal
    hold_id: str
    confirmed_by: str
    quoted_at: datetime


def price(cart: Cart, now: datetime) -> Quote:
    total = sum((PRICES.get(line.sku, Decimal(1)) * line.qty for line in cart.lines), Decimal(0))
    return Quote(total=total, quoted_at=now)


@worker.function
async def reserve(ctx: trine.Context, reservation: Reservation) -> Reserved:
    return Reserved(hold_id=f"hold-{ctx.run_id}", skus=reservation.skus)


@worker.function
async def checkout(ctx: trine.Context, cart: Cart) -> Invoice:
    quote = await ctx.step("price", price, cart, await ctx.now())
    reserved = await ctx.run(reserve, Reservation(skus=[line.sku for line in cart.lines]))
    confirmation = await ctx.wait_for_signal("confirm", Confirmation)
    return Invoice(
        customer=cart.customer,
        total=quote.total,
        hold_id=reserved.hold_id,
        confirmed_by=confirmation.by,
        quoted_at=quote.quoted_at,
    )


if __name__ == "__main__":
    worker.run()
