"""Cosmos DB requests (and RU) of the pattern, counted by the adapters' own meter on the Cosmos
protocol test server (``@vercel/cosmosdb-server``, from ``npm ci``): a cold and a warm command,
a projection batch, the next batch of the same streams, and a publish batch.

The test server charges no real RU (its figures are placeholders), so the request counts are the
meaningful figures here; on Azure each request's charge is in the same log lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from app.bootstrap import ORDER_VIEW
from app.integration import IntegrationEvents
from app.orders import ORDERS_PROJECTOR, ORDERS_PUBLISHER
from contracts.mapping import order_publications
from contracts.messages import Channel
from domain.orders import (
    ORDER_STREAM,
    AddItemToCart,
    CreateOrder,
    DeleteItemFromCart,
    MarkOrderPaid,
    checkout_command,
    order_codec,
    order_decider,
)
from eventstore.adapters.cosmos import CosmosDatabase, RequestMeter, cosmos_client_from_settings
from eventstore.clock import new_id
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.commit import Commit
from eventstore.ports import OutboundMessage
from eventstore.projection import Projector
from eventstore.publishing import Publisher


class _CountingPublisher:
    def __init__(self) -> None:
        self.sent = 0

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.sent += len(messages)

    def close(self) -> None:
        pass


def _figure(what: str, measured: Any, **extra: Any) -> dict[str, Any]:
    return {"what": what, "requests": measured.requests,
            "request_charge": round(measured.request_charge, 2), **extra}


def run(orders: int = 10) -> list[dict[str, Any]]:
    from tests.support.cosmos_server import running_cosmos_server

    with running_cosmos_server() as server:
        client = cosmos_client_from_settings(server.info.settings)
        meter = RequestMeter()
        database = CosmosDatabase(client, f"bench-{uuid.uuid4().hex[:8]}", meter=meter)
        database.ensure_containers()
        processor = CommandProcessor(database.events, ORDER_STREAM, order_decider, order_codec)
        figures = []
        streams: list[str] = []
        for n in range(orders):
            order_id = str(uuid.uuid4())
            streams.append(ORDER_STREAM.stream_id(order_id))
            context = CommandContext(new_id(), new_id())
            processor.execute(order_id, CreateOrder(order_id, "customer-1", "EUR"), context)
            if n == 0:
                # A fresh process: nothing cached, so the command reads the stream first.
                cold_processor = CommandProcessor(database.events, ORDER_STREAM, order_decider,
                                                  order_codec)
                with meter.measure() as cold:
                    cold_processor.execute(order_id, AddItemToCart("product-0", 1, 100),
                                           CommandContext(new_id(), new_id()))
                with meter.measure() as warm:
                    cold_processor.execute(order_id, AddItemToCart("product-1", 1, 100),
                                           CommandContext(new_id(), new_id()))
                figures += [_figure("cold command (add-item)", cold),
                            _figure("warm command (add-item)", warm)]
                processor = cold_processor
            for item in range(2 if n == 0 else 0, 4):  # 4 items in all
                processor.execute(order_id, AddItemToCart(f"product-{item}", 1, 100),
                                  CommandContext(new_id(), new_id()))
            deleted = processor.execute(order_id, DeleteItemFromCart("item-2"),
                                        CommandContext(new_id(), new_id()))
            checkout = checkout_command(deleted.state, deleted.version)
            processor.execute(order_id, checkout, CommandContext(new_id(), new_id()))
            processor.execute(order_id, MarkOrderPaid(checkout.payment_id),
                              CommandContext(new_id(), new_id()))
        by_stream = [database.events.read_stream(s) for s in streams]
        commits: list[Commit] = [c for stream in by_stream for c in stream]
        # Two batches, as the feed would deliver them: every stream's commits but the last, then
        # the last ones (the views the first batch wrote are remembered: no read).
        earlier = [c for stream in by_stream for c in stream[:-1]]
        latest = [stream[-1] for stream in by_stream]
        projector = Projector(ORDER_VIEW, database.views, database.dead_letters, ORDERS_PROJECTOR)
        with meter.measure() as projection:
            projector.handle(earlier)
        figures.append(_figure("projection batch", projection, commits=len(earlier),
                               streams=len(streams)))
        with meter.measure() as next_projection:
            projector.handle(latest)
        figures.append(_figure("next batch, same streams", next_projection,
                               commits=len(latest), streams=len(streams)))
        publisher = _CountingPublisher()
        mapper = IntegrationEvents(order_publications, order_codec, database.events,
                                   {Channel.ORDERS_TOPIC: "orders"})
        with meter.measure() as publish:
            Publisher(mapper, publisher, database.dead_letters, ORDERS_PUBLISHER).handle(commits)
        figures.append(_figure("publish batch", publish, commits=len(commits),
                               streams=len(streams), messages=publisher.sent))
        client.delete_database(database.database_name)
        return figures


def print_figures(figures: list[dict[str, Any]]) -> None:
    print("\nCosmos DB requests on the test peer (its RU are placeholders):")
    for row in figures:
        extra = ", ".join(f"{k} {v}" for k, v in row.items()
                          if k not in ("what", "requests", "request_charge"))
        print(f"  {row['what']:26} {row['requests']:>4} request(s), {row['request_charge']} RU"
              + (f" ({extra})" if extra else ""))
