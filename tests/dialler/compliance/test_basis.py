"""PECR reg. 21A: every queue the dialler calls from has a recorded basis, and only service calls."""

from __future__ import annotations

import pytest

from dialler.compliance.basis import CALL_BASIS, call_basis
from dialler.queues.keys import QUEUES


def test_every_queue_a_customer_is_called_from_has_a_service_basis() -> None:
    assert set(CALL_BASIS) == set(QUEUES)  # a new queue must say why its customers may be called
    for queue in QUEUES:
        assert call_basis(queue).startswith("service call to an existing client")


def test_a_queue_with_no_basis_is_refused() -> None:
    with pytest.raises(ValueError, match="no basis"):
        call_basis("marketing")
