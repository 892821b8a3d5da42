"""Pumps an event store's change feed into a change-feed function, like the Cosmos DB trigger:
batches of up to maxItemsPerInvocation, the checkpoint saved only after the function succeeded,
the function's retry policy on failure, and a wake-up on append instead of a fixed poll."""

from __future__ import annotations

import logging
import threading

import azure.functions as func

from devhost.indexing import FeedSpec
from devhost.invocations import invoke
from eventstore.ports import FeedStore

log = logging.getLogger("devhost.feed")

IDLE_POLL_SECONDS = 1.0  # only for stores without an append wake-up (the Cosmos pull feed)


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
