"""Runs the change-feed functions as the Cosmos DB trigger does.

Each function runs through the kernel's lease-based processor (``eventstore.changefeed``), on
either backend: the embedded store's feed ranges and leases (shared between every host on the
data folder) or the Cosmos DB container's feed ranges and lease documents in its leases container
(shared between every host on the account). One lease per (lease prefix, range), batches of up to
maxItemsPerInvocation as a ``DocumentList``, the checkpoint written by the lease's owner only after
the function succeeded, the function's retry policy on failure, and takeover of a stopped or killed
host's ranges once its leases expire. Every change of ownership is printed.
"""

from __future__ import annotations

from dataclasses import replace

import azure.functions as func

from devhost.indexing import FeedSpec
from devhost.invocations import invoke, print_line
from eventstore.changefeed import ChangeFeedProcessor, LeaseEvent, ProcessorOptions
from eventstore.commit import JsonDict
from eventstore.ports import FeedRange, LeaseStore, PartitionedFeed


def feed_processor(spec: FeedSpec, feed: PartitionedFeed, leases: LeaseStore, *,
                   instance_id: str, options: ProcessorOptions) -> ChangeFeedProcessor:
    """The processor that runs one change-feed function in this host."""
    total = len(feed.feed_ranges())

    def handle(feed_range: FeedRange, documents: list[JsonDict]) -> None:
        # As stored, unparsed: the function parses at its edge and parks what is not a commit.
        batch = func.DocumentList([_document(d) for d in documents])
        invoke(spec.name, spec.call, {spec.arg_name: batch},
               f"({len(documents)} documents, range {feed_range.id}/{total})")

    def announce(event: LeaseEvent) -> None:
        print_line(describe_lease_event(spec.name, event, total))

    return ChangeFeedProcessor(
        spec.lease_prefix or spec.name, feed, leases, handle, instance_id=instance_id,
        options=replace(options, max_items=spec.max_items), retry=spec.retry,
        on_lease=announce)


def _document(fields: JsonDict) -> func.Document:
    """What ``func.Document.from_dict`` makes (a ``UserDict`` over the fields), without its copy
    key by key through ``__setitem__``: the fields are this read's own."""
    document = func.Document()
    document.data = fields
    return document


def describe_lease_event(function: str, event: LeaseEvent, total: int) -> str:
    """``Lease 'orders_projector' range 2/4 taken over by b:12 from a:9 (expired); b:12 owns
    ranges 1,2 of 4``."""
    how = {
        "acquired": f"acquired by {event.instance}",
        "taken over": f"taken over by {event.instance} from {event.other} (its lease expired)",
        "rebalanced": f"taken by {event.instance} from {event.other} (balancing)",
        "lost": f"lost by {event.instance} to {event.other}",
        "released": f"released by {event.instance} (stopping)",
    }[event.kind]
    owned = ",".join(event.owned) if event.owned else "none"
    return (f"Lease '{function}' range {event.range_id}/{total} {how}; {event.instance} owns "
            f"ranges {owned} of {total}")
