"""Where to start looking for a subnet's lowest free address.

For each subnet the allocator keeps a lower bound on its lowest free address: every address of
the pools below the bound is known to be allocated. Allocating the lowest free address from the
bound upward raises it; freeing an address lowers it; changing a subnet's pools resets it.
Allocation then checks a small window of candidates instead of reading every allocation of
the subnet, so a port create costs the same with 10 or 60,000 ports on the subnet.

Hints change only when the transaction that changed the allocations commits (`commit`), and
are dropped on rollback, so a rejected request leaves them as they were. A hint is an
optimisation, never a source of truth: the allocator still checks the database, and another
server process freeing an address below a hint only means that address is found later, by the
full scan the allocator falls back to when the window search runs out.
"""

from __future__ import annotations


class AddressHints:
    def __init__(self) -> None:
        self._bounds: dict[str, int] = {}  # committed: subnet id -> lowest possibly free address
        self._raised: dict[str, int] = {}  # this transaction's allocations
        self._lowered: dict[str, int] = {}  # this transaction's frees (or -1: forget the bound)

    def lower_bound(self, subnet_id: str) -> int | None:
        if subnet_id in self._raised:
            return self._raised[subnet_id]
        if subnet_id in self._lowered:
            return None
        return self._bounds.get(subnet_id)

    def allocated_lowest(self, subnet_id: str, address: int) -> None:
        """`address` was the lowest free address from the bound up, and is now taken."""
        self._raised[subnet_id] = address + 1

    def freed(self, subnet_id: str, address: int) -> None:
        self._lowered[subnet_id] = min(self._lowered.get(subnet_id, address), address)

    def reset(self, subnet_id: str) -> None:
        self._lowered[subnet_id] = -1

    def commit(self) -> None:
        for subnet_id, bound in self._raised.items():
            self._bounds[subnet_id] = bound
        for subnet_id, low in self._lowered.items():
            if low < 0 or subnet_id not in self._bounds:
                self._bounds.pop(subnet_id, None)
            else:
                self._bounds[subnet_id] = min(self._bounds[subnet_id], low)
        self.rollback()

    def rollback(self) -> None:
        self._raised.clear()
        self._lowered.clear()
