"""Runs the change-feed functions as the Cosmos DB trigger does.

Where the backend has a partitioned feed and leases (the embedded store), each function runs
through the kernel's lease-based processor (``eventstore.changefeed``): its feed ranges shared
between every host on the data folder, one lease per (lease prefix, range), batches of up to
maxItemsPerInvocation as a ``DocumentList``, the checkpoint written by the lease's owner only after
the function succeeded, the function's retry policy on failure, and takeover of a stopped or killed
host's ranges once its leases expire. Every change of ownership is printed.

``FeedPump`` is the single-consumer pump for a backend without leases yet (the Cosmos DB adapter's
pull feed under ``--backend azure``): one global checkpoint per lease prefix, one host at a time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import azure.functions as func

from devhost.indexing import FeedSpec
from devhost.invocations import invoke, print_line
from eventstore.changefeed import ChangeFeedProcessor, LeaseEvent, ProcessorOptions
from eventstore.commit import JsonDict
from eventstore.ports import FeedRange, FeedStore, LeaseStore, PartitionedFeed

log = logging.getLogger("devhost.feed")

IDLE_POLL_SECONDS = 1.0  # only for stores without an append wake-up (the Cosmos pull feed)


def feed_processor(spec: FeedSpec, feed: PartitionedFeed, leases: LeaseStore, *,
                   instance_id: str, options: ProcessorOptions) -> ChangeFeedProcessor:
    """The processor that runs one change-feed function in this host."""
    total = len(feed.feed_ranges())

    def handle(feed_range: FeedRange, documents: list[JsonDict]) -> None:
        # As stored, unparsed: the function parses at its edge and parks what is not a commit.
        batch = func.DocumentList([func.Document.from_dict(d) for d in documents])
        invoke(spec.name, spec.call, {spec.arg_name: batch},
               f"({len(documents)} documents, range {feed_range.id}/{total})")

    def announce(event: LeaseEvent) -> None:
        print_line(describe_lease_event(spec.name, event, total))

    return ChangeFeedProcessor(
        spec.lease_prefix or spec.name, feed, leases, handle, instance_id=instance_id,
        options=replace(options, max_items=spec.max_items), retry=spec.retry,
        on_lease=announce)


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


class FeedPump(threading.Thread):
    def __init__(self, spec: FeedSpec, store: FeedStore, stop: threading.Event) -> None:
        super().__init__(name=f"feed:{spec.name}", daemon=True)
        self.spec = spec
        self.store = store
        self.stop = stop
        # One consumer per lease prefix, as the trigger keeps one lease set per prefix.
        self.consumer = spec.lease_prefix or spec.name

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                self._pump_once()
                failures = 0
            except InterruptedError:
                return
            except Exception as error:  # the store itself failed: back off and try again
                failures += 1
                log.warning("%s: reading the change feed failed (%r); retrying", self.spec.name,
                            error)
                self.stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))

    def _pump_once(self) -> None:
        checkpoint = self.store.load_checkpoint(self.consumer)
        page = self.store.read_feed(checkpoint, self.spec.max_items)
        if not page.documents:
            self._wait_for_more(checkpoint)
            return
        # As stored, unparsed: the function parses at its edge and parks what is not a commit.
        documents = func.DocumentList([func.Document.from_dict(d) for d in page.documents])
        self._deliver(documents)
        if page.checkpoint is not None:
            self.store.save_checkpoint(self.consumer, page.checkpoint)

    def _deliver(self, documents: func.DocumentList) -> None:
        retry = 0
        policy = self.spec.retry
        while True:
            try:
                invoke(self.spec.name, self.spec.call, {self.spec.arg_name: documents},
                       f"({len(documents)} documents)")
                return
            except Exception as error:
                retry += 1
                if policy is None or not policy.allows(retry):
                    # The Cosmos DB trigger moves on when retries are exhausted; so do we, loudly.
                    log.error("%s: batch failed and its retries are exhausted; moving on: %r",
                              self.spec.name, error)
                    return
                delay = policy.delay_before(retry)
                log.warning("%s: batch failed (%r); retry %d in %.1fs", self.spec.name, error,
                            retry, delay)
                if self.stop.wait(delay):
                    raise InterruptedError("host stopping; the batch will be redelivered") from None

    def _wait_for_more(self, checkpoint: str | None) -> None:
        wait = getattr(self.store, "wait_for_commits", None)
        if wait is not None:
            wait(checkpoint, IDLE_POLL_SECONDS)
        else:
            self.stop.wait(IDLE_POLL_SECONDS)
