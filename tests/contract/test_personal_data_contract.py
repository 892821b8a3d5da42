"""Contract of PersonalDataStore: put, get, and erase (idempotent, leaving a tombstone)."""

from __future__ import annotations

import uuid

from tests.contract.conftest import Backend

DETAILS = {"name": "Ada Lovelace", "email": "ada@example.org",
           "shippingAddress": "12 St James's Square\nLondon"}


def new_subject() -> str:
    return f"customer-{uuid.uuid4().hex}"


def test_nothing_stored_is_none(backend: Backend) -> None:
    assert backend.personal_data.get(new_subject()) is None


def test_put_then_get_returns_the_data(backend: Backend) -> None:
    subject = new_subject()
    backend.personal_data.put(subject, {**DETAILS, "note": "Grüße \u2603"})
    stored = backend.personal_data.get(subject)
    assert stored is not None
    assert (stored.subject_id, stored.data, stored.erased_at) == (
        subject, {**DETAILS, "note": "Grüße \u2603"}, None)
    assert stored.updated_at.endswith("Z")


def test_put_replaces_and_subjects_are_independent(backend: Backend) -> None:
    first, second = new_subject(), new_subject()
    backend.personal_data.put(first, DETAILS)
    backend.personal_data.put(second, {**DETAILS, "name": "Charles Babbage"})
    backend.personal_data.put(first, {**DETAILS, "email": "countess@example.org"})
    one, two = backend.personal_data.get(first), backend.personal_data.get(second)
    assert one is not None and one.data == {**DETAILS, "email": "countess@example.org"}
    assert two is not None and two.data == {**DETAILS, "name": "Charles Babbage"}


def test_erase_leaves_a_tombstone_and_keeps_others(backend: Backend) -> None:
    erased, kept = new_subject(), new_subject()
    backend.personal_data.put(erased, DETAILS)
    backend.personal_data.put(kept, DETAILS)

    backend.personal_data.erase(erased)

    tombstone = backend.personal_data.get(erased)
    assert tombstone is not None and tombstone.data is None
    assert tombstone.erased_at is not None and tombstone.erased_at.endswith("Z")
    other = backend.personal_data.get(kept)
    assert other is not None and other.data == DETAILS


def test_erase_is_idempotent_and_keeps_the_first_erasure_time(backend: Backend) -> None:
    subject = new_subject()
    backend.personal_data.put(subject, DETAILS)
    backend.personal_data.erase(subject)
    first = backend.personal_data.get(subject)
    backend.personal_data.erase(subject)
    again = backend.personal_data.get(subject)
    assert first is not None and again is not None
    assert again.erased_at == first.erased_at and again.data is None


def test_erasing_what_was_never_stored_records_the_erasure(backend: Backend) -> None:
    subject = new_subject()
    backend.personal_data.erase(subject)
    stored = backend.personal_data.get(subject)
    assert stored is not None and stored.data is None and stored.erased_at is not None


def test_data_given_again_after_an_erasure_is_stored(backend: Backend) -> None:
    subject = new_subject()
    backend.personal_data.put(subject, DETAILS)
    backend.personal_data.erase(subject)
    backend.personal_data.put(subject, {**DETAILS, "name": "A. A. Lovelace"})
    stored = backend.personal_data.get(subject)
    assert stored is not None and stored.erased_at is None
    assert stored.data == {**DETAILS, "name": "A. A. Lovelace"}


def test_a_reopened_store_sees_the_data_and_the_erasures(backend: Backend) -> None:
    kept, erased = new_subject(), new_subject()
    backend.personal_data.put(kept, DETAILS)
    backend.personal_data.put(erased, DETAILS)
    backend.personal_data.erase(erased)
    reopened = backend.reopen()
    stored = reopened.personal_data.get(kept)
    gone = reopened.personal_data.get(erased)
    assert stored is not None and stored.data == DETAILS
    assert gone is not None and gone.data is None and gone.erased_at is not None
